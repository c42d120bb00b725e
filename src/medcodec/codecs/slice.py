"""One slice through a codec, the one way every caller codes pixels.

A slice is shifted to unsigned by its own minimum and coded at the bits its range needs; it is
decoded again at once and checked (identical for lossless, within the bound for near-lossless)
before anyone stores it, and its record (shift, bits, achieved error, a CRC32 of the decoded
pixels) travels with it. Decoding undoes the shift, clamps to the allowed range and checks the
CRC. The ``.mdcx`` pipeline, the Zarr codec, the bench and batch all code slices through here.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from medcodec.codecs.base import Codec, CodingSpec, Mode, unsigned_dtype
from medcodec.codecs.rate import rate_search
from medcodec.errors import CodecUnavailableError, CorruptStreamError, MedcodecError
from medcodec.image import value_range_bits

#: Rows of int64 the clamping restore converts at a time (about 32 MiB).
_RESTORE_BLOCK_VALUES = 1 << 22


@dataclass(frozen=True)
class SliceRecord:
    """What a container says about one coded slice."""

    shift: int
    bits: int
    max_abs_err: int
    crc32: int
    quality: float | None = None  # the knob setting, when a rate search chose it per slice

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shift": self.shift, "bits": self.bits,
                               "max_abs_err": self.max_abs_err, "crc32": self.crc32}
        if self.quality is not None:
            out["quality"] = self.quality
        return out


@dataclass(frozen=True)
class CodedSlice:
    """A coded slice: its bytes, its record, and its decoded pixels (the next slice's context)."""

    data: bytes
    record: SliceRecord
    decoded: np.ndarray


def pixel_crc32(pixels: np.ndarray) -> int:
    """CRC32 of pixels as little-endian bytes: the same number on every machine."""
    data = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<"))
    return zlib.crc32(memoryview(data).cast("B")) & 0xFFFFFFFF  # no copy


def make_spec(mode: str = "lossless", max_error: int | None = None,
              quality: float | None = None) -> CodingSpec:
    """A coding spec from user-facing values; a bad combination is a clean error."""
    try:
        return CodingSpec(Mode(mode), int(max_error or 0), quality)
    except ValueError as exc:
        raise MedcodecError(str(exc)) from None


def to_unsigned(pixels: np.ndarray, bits: int | None = None) -> tuple[np.ndarray, int, int]:
    """``(pixels - min, min, bits)`` with the shifted slice in the smallest unsigned type;
    ``bits`` defaults to what the slice's range needs."""
    low, high = int(pixels.min()), int(pixels.max())
    bits = value_range_bits(low, high) if bits is None else bits
    return (pixels.astype(np.int64) - low).astype(unsigned_dtype(bits)), low, bits


def restore(decoded: np.ndarray, shift: int, bits: int, dtype: np.dtype,
            clip: tuple[int, int] | None = None) -> np.ndarray:
    """Undo the shift, clamping to the coded range so lossy overshoot cannot wrap around, and
    to ``clip`` (the image's stored value range) so nothing lands outside BitsStored.

    When nothing needs clamping (the decoder kept to ``bits`` bits and ``shift + max`` stays
    in the allowed range), the shift is added in the pixel type itself: exact in its modular
    arithmetic, and no int64 copies of a large slice. Otherwise values are clamped in int64,
    row block by row block.
    """
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    low, high = clip if clip is not None else (info.min, info.max)
    low, high = max(low, info.min), min(high, info.max)
    top = (1 << bits) - 1
    decoded = np.asarray(decoded)
    peak = int(decoded.max(initial=0)) if decoded.dtype.kind == "u" else top + 1
    if peak <= top and low <= shift and shift + peak <= high:
        if decoded.dtype.itemsize == dtype.itemsize and decoded.flags.writeable:
            plane = decoded.view(dtype)  # the decoder's own buffer: no copy
        else:
            plane = decoded.astype(dtype, casting="unsafe")
        if shift:
            np.add(plane, np.array(shift).astype(dtype), out=plane)  # wraps back into range
        return plane
    out = np.empty(decoded.shape, dtype=dtype)
    flat_in = decoded.reshape(decoded.shape[0], -1) if decoded.ndim else decoded.reshape(1, 1)
    flat_out = out.reshape(flat_in.shape)
    step = max(1, _RESTORE_BLOCK_VALUES // max(1, flat_in.shape[1]))
    for start in range(0, flat_in.shape[0], step):
        block = np.clip(flat_in[start : start + step].astype(np.int64), 0, top) + shift
        flat_out[start : start + step] = np.clip(block, low, high)
    return out


def encode_slice(codec: Codec, pixels: np.ndarray, spec: CodingSpec, *, verify: bool = True,
                 target_bpp: float | None = None, previous: np.ndarray | None = None,
                 clip: tuple[int, int] | None = None) -> CodedSlice:
    """Code one slice, decode it again, measure it, and check the mode's promise.

    ``target_bpp`` searches the codec's knob for that rate; ``previous`` (the previous decoded
    slice) is context for codecs that take it; ``clip`` is the value range decoded pixels are
    clamped to.
    """
    shifted, low, bits = to_unsigned(pixels)
    codec.check(bits, spec)
    chosen: float | None = None
    if target_bpp is not None:
        if codec.knob is None:
            raise MedcodecError(f"codec {codec.name} has no quality knob to search for --bpp")

        def bpp_at(value: float) -> float:
            data = codec.encode(shifted, bits, CodingSpec(Mode.LOSSY, 0, value))
            return 8 * len(data) / shifted.size

        chosen = rate_search(bpp_at, codec.knob, target_bpp).setting
        spec = CodingSpec(Mode.LOSSY, 0, chosen)
    context = {} if previous is None else {"previous": previous.astype(np.int64) - low}
    try:
        data = codec.encode(shifted, bits, spec, **context)
    except (MedcodecError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a library's own limit we did not know of: still one clear line
        raise CodecUnavailableError(
            f"codec {codec.name} cannot code this {shifted.shape[0]}x{shifted.shape[1]} "
            f"{bits}-bit slice ({type(exc).__name__}: {exc})") from exc
    decoded = restore(codec.decode(data, shifted.shape, bits, **context), low, bits,
                      pixels.dtype, clip)
    error = int(np.max(np.abs(decoded.astype(np.int64) - pixels.astype(np.int64)), initial=0))
    if verify:
        bound = spec.max_error if spec.mode is Mode.NEAR_LOSSLESS else 0
        if spec.mode is not Mode.LOSSY and error > bound:
            raise MedcodecError(
                f"codec {codec.name} broke its {spec.mode.value} promise on this slice "
                f"(max error {error} > {bound}); nothing was written"
            )
    return CodedSlice(data, SliceRecord(low, bits, error, pixel_crc32(decoded), chosen), decoded)


def decode_slice(codec: Codec, data: bytes, shift: int, bits: int, crc32: int,
                 shape: tuple[int, int], dtype: np.dtype, *, previous: np.ndarray | None = None,
                 clip: tuple[int, int] | None = None, what: str = "slice",
                 **context: Any) -> np.ndarray:
    """Pixels of one coded slice, checked against the CRC32 its record keeps.

    ``previous`` is the previous decoded slice (inter-slice streams); ``context`` goes to the
    codec as is (e.g. the learned codec's weights digests); ``what`` names the slice in errors.
    """
    if previous is not None:
        context["previous"] = previous.astype(np.int64) - shift
    pixels = restore(codec.decode(data, shape, bits, **context), shift, bits, dtype, clip)
    if pixel_crc32(pixels) != crc32:
        raise CorruptStreamError(
            f"{what} decoded to different pixels than were encoded (checksum mismatch): the "
            "stream is damaged or this decoder differs from the encoder's")
    return pixels
