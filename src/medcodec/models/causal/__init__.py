"""The raster-scan pixel estimator: online least squares, bias correction, per-image tables."""
