"""medcodec's pixel-estimation model, in parts (see ``medcodec.models.pixel_estimation``)."""
