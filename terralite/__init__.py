"""TerraLite: architecture search and compression for land-cover semantic segmentation."""

__version__ = "0.1.0"
