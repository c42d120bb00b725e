"""Signal transforms used by the codecs (wavelets)."""

from medcodec.transforms.wavelet import (
    Subbands,
    int53_forward,
    int53_inverse,
    wavelet_forward,
    wavelet_inverse,
)

__all__ = ["Subbands", "int53_forward", "int53_inverse", "wavelet_forward", "wavelet_inverse"]
