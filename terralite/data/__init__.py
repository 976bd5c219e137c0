"""Data layer: OpenEarthMap tiles, large rasters, Sentinel-2 bands, transforms, synthetic data, checks, statistics.

Importing this package has no side effects; heavy modules are imported where they are used.
"""
