"""JPEG-LS (ISO 14495-1) through CharLS: lossless and bounded-error near-lossless.

Encoding goes through pyjpegls because it lets us state the sample precision P (imagecodecs
always writes P = 8 or 16, which wastes ~1% on 12-bit CT); decoding through imagecodecs into a
pre-allocated array, so a forged stream cannot make the decoder allocate more than we expect.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from medcodec.codecs.base import (
    Codec,
    CodingSpec,
    Knob,
    Mode,
    decode_into,
    twos_complement_pattern,
    unsigned_dtype,
)


class JpegLsCodec(Codec):
    name = "jpegls"
    description = "JPEG-LS (CharLS): lossless, near-lossless NEAR=d"
    modes: ClassVar = frozenset({Mode.LOSSLESS, Mode.NEAR_LOSSLESS})
    min_bits = 2
    max_bits = 16
    dicom_method = "ISO_14495_1"
    dicom_syntaxes = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
    max_side = 65535  # 16-bit frame dimensions

    def dicom_knob(self, bits: int) -> Knob:
        # NEAR; CharLS allows up to min(255, MAXVAL / 2)
        return Knob("near", 1, max(1, min(255, (1 << (bits - 1)) - 1)), rate_increases=False,
                    integer=True, log_scale=False)

    def dicom_encode(self, frame: np.ndarray, bits: int, signed: bool,
                     setting: float | None = None) -> bytes:
        """Signed data travel as their bit pattern in Bits Stored bits (PS3.5 A.4.3)."""
        near = int(setting or 0)
        spec = CodingSpec(Mode.NEAR_LOSSLESS, near) if near else CodingSpec(Mode.LOSSLESS)
        return self.encode(twos_complement_pattern(frame, bits), bits, spec)

    def min_chunk_bytes(self, rows: int, cols: int, bits: int) -> int:
        # Every line costs at least about one bit, even a constant line in run mode (a constant
        # 16384 x 16 slice takes 2,214 bytes); half of that is a safe floor.
        return max(1, rows // 16)

    @classmethod
    def available(cls) -> bool:
        try:
            import imagecodecs
            import jpeg_ls  # noqa: F401
        except ImportError:
            return False
        return bool(imagecodecs.JPEGLS.available)

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return f"pyjpegls {version('pyjpegls')} (CharLS)"

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        import jpeg_ls

        bits = max(self.min_bits, bits)
        near = spec.max_error if spec.mode is Mode.NEAR_LOSSLESS else 0
        if near >= 2 ** (bits - 1):
            # CharLS rejects NEAR >= MAXVAL/2; carry the data at a higher precision instead of
            # silently capping the requested error (imagecodecs issue 119).
            bits = min(16, max(bits, int(near).bit_length() + 2))
        data = np.ascontiguousarray(array, dtype=unsigned_dtype(bits).newbyteorder("<"))
        rows, cols = data.shape
        try:
            return bytes(
                jpeg_ls.encode_pixel_data(
                    data.tobytes(),
                    lossy_error=int(near),
                    rows=rows,
                    columns=cols,
                    samples_per_pixel=1,
                    bits_stored=bits,
                )
            )
        except RuntimeError:
            # pyjpegls under-sizes its output buffer for tiny, noisy images; imagecodecs writes
            # the same standard stream at P = 8 or 16, which costs nothing at these sizes.
            import imagecodecs

            return bytes(imagecodecs.jpegls_encode(data, level=int(near)))

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        import imagecodecs

        return decode_into(imagecodecs.jpegls_decode, data, shape, max(bits, self.min_bits),
                           "JPEG-LS")
