"""medcodec's learned lossy model, in parts (see ``medcodec.models.wavelet_latent``)."""
