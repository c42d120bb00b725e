"""The paper-literal lossy codec: DWT subbands -> cross-attention (CAL) and a learned analysis
transform -> quantised latent with hyperprior and checkerboard context -> learned synthesis ->
inverse DWT -> trainable 3x3 filter, all of it run in exact integer arithmetic."""
