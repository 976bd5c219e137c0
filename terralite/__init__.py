"""TerraLite: architecture search and compression for land-cover semantic segmentation."""

__version__ = "0.2.0"
