"""TerraLite: architecture search and compression for land-cover semantic segmentation.

The Python API (see the README's "Python API" section) is loaded on first use, so that ``import terralite``
stays light (no torch) and has no side effects::

    import terralite
    predictor = terralite.load_predictor("runs/sm/best.pt")
    terralite.predict_raster(predictor, "scene.tif", "scene_map.tif")
"""

__version__ = "0.2.0"

#: The names ``import terralite`` exposes, all from :mod:`terralite.api`.
API = ("build_model", "load_model", "list_models", "load_predictor", "predict_raster", "profile", "bench",
       "search", "train")

__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        from terralite import api

        return getattr(api, name)
    raise AttributeError(f"module 'terralite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
