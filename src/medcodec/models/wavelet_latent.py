"""The learned lossy codec: wavelet latent, cross-attention context, hyperprior, exact coding.

Following Dai (Sci Rep 2025), in the form that trains on a CPU and decodes bit-exactly:

* **Analysis**: a 5-level CDF 9/7 DWT of the native-depth image (no 8-bit conversion). The
  quantised wavelet coefficients are the VAE latent ``y``; quantisation is a dead-zone
  uniform quantiser with one global step (the rate/quality parameter: one model, every rate)
  times a per-subband weight.
* **Hyperprior**: the side information ``z``, a log-coded energy per 32x32 image block at the two
  finest levels, is coded first; the rate is ``-log2 p(z) - log2 p(y | z)`` (the KL term of a VAE
  with a uniform posterior), all of it real bytes from constriction's ANS coder.
* **CAL, cross-attention learning**: for every coefficient, multi-head query-key-value attention
  whose queries come from the coefficient's own context (step, siblings, neighbours, ``z``) and
  whose keys and values are the 9 co-located coefficients of the coarser level, in all three
  orientations. Its output steers the entropy model: where the coarse structure says a
  coefficient matters (an edge continuing across scales), the model expects, and spends, bits.
* **Entropy parameters** come from a small network per orientation (attention + MLP) run in exact
  integer arithmetic (:mod:`medcodec.models.intnet`, softmax through an integer table), so the
  decoder derives the same Laplace table index as the encoder on any machine. Each subband is
  coded in two checkerboard passes; the second pass sees its four decoded neighbours.
* **Encoder-side choices**, flagged in the header: dependent (trellis-coded) quantisation of
  the detail bands (:mod:`medcodec.models.wavelet.trellis`), and per-image shifts of the
  table indices, which correct the model on an image unlike its training data.
* **Synthesis**: learned reconstruction points inside each quantiser bin (decoder-side
  estimation), inverse DWT, then the trainable 3x3 spatial filter (integer taps, one set per
  rate band), a separate stage that can be switched off.
"""

from __future__ import annotations

from medcodec.models.wavelet.attention import (
    HEADS,
    KEY_DIM,
    POSITIONS,
    SOFTMAX_STEPS,
    SOFTMAX_TABLE,
    VALUE_DIM,
    BandNet,
    softmax_table,
)
from medcodec.models.wavelet.features import (
    FEATURES,
    STATIC,
    BandContext,
    attention_inputs,
    band_static,
    log4,
    neighbour_stats,
    neighbourhood,
    parent_cells,
    pass_features,
    step_code,
)
from medcodec.models.wavelet.hyperprior import (
    HYPER_BLOCK,
    HYPER_LEVELS,
    block_code,
    block_shape,
    dpcm_reconstruct,
    dpcm_residuals,
    expand_blocks,
)
from medcodec.models.wavelet.model import (
    SCALE_COUNT,
    SCALE_MAX,
    SCALE_MIN,
    WaveletModel,
    build_tables,
    is_dependent,
    scale_step,
)
from medcodec.models.wavelet.passes import (
    BandPass,
    LevelStart,
    band_passes,
)
from medcodec.models.wavelet.schedule import (
    LEVELS,
    ORIENTS,
    ROUNDING,
    SCHEDULES,
    band_steps,
    checkerboard,
    dequantise,
    levels_for,
    pass_positions,
    quantise,
    synthesis_gain,
)
from medcodec.models.wavelet.synthesis import (
    FILTER_BANDS,
    FILTER_FRACTION_BITS,
    FILTER_ONE,
    apply_filter,
    filter_band,
)
from medcodec.transforms.wavelet import Subbands, wavelet_forward, wavelet_inverse

__all__ = [
    "FEATURES",
    "FILTER_BANDS",
    "FILTER_FRACTION_BITS",
    "FILTER_ONE",
    "HEADS",
    "HYPER_BLOCK",
    "HYPER_LEVELS",
    "KEY_DIM",
    "LEVELS",
    "ORIENTS",
    "POSITIONS",
    "ROUNDING",
    "SCALE_COUNT",
    "SCALE_MAX",
    "SCALE_MIN",
    "SCHEDULES",
    "SOFTMAX_STEPS",
    "SOFTMAX_TABLE",
    "STATIC",
    "VALUE_DIM",
    "BandContext",
    "BandNet",
    "BandPass",
    "LevelStart",
    "Subbands",
    "WaveletModel",
    "apply_filter",
    "attention_inputs",
    "band_passes",
    "band_static",
    "band_steps",
    "block_code",
    "block_shape",
    "build_tables",
    "checkerboard",
    "dequantise",
    "dpcm_reconstruct",
    "dpcm_residuals",
    "expand_blocks",
    "filter_band",
    "is_dependent",
    "levels_for",
    "log4",
    "neighbour_stats",
    "neighbourhood",
    "parent_cells",
    "pass_features",
    "pass_positions",
    "quantise",
    "scale_step",
    "softmax_table",
    "step_code",
    "synthesis_gain",
    "wavelet_forward",
    "wavelet_inverse",
]
