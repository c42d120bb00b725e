"""Learned models: exact integer inference (``intnet``), the pixel-estimation network for
lossless and near-lossless coding (``pixel_estimation``) and the wavelet codec's networks."""
