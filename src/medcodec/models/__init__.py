"""Learned models: exact integer inference (``intnet``), the raster-scan pixel estimator
(``causal``) and the pixel-estimation network (``pixel_estimation``) for lossless and
near-lossless coding, and the wavelet codec's networks."""
