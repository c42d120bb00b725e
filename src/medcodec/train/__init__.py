"""Training of medcodec's learned models (needs the ``train`` extra: torch)."""
