"""medcodec's own codec: the learned models behind the common codec interface.

* lossless and near-lossless: the raster-scan pixel estimator (online least squares and a
  pixel-estimation network, :mod:`medcodec.models.causal`), alone or with the previous slice
  of a volume; the interlaced pixel-estimation network (:mod:`medcodec.models.pixel_estimation`)
  when ``MEDCODEC_PEN_WEIGHTS`` / ``MEDCODEC_INTER_WEIGHTS`` name your own weights from
  ``medcodec train --model pen`` (and to decode streams written before the raster-scan model);
* lossy: one of two models, the knob being the quantiser step in stored units in both: the
  wavelet latent with cross-attention context and hyperprior
  (:mod:`medcodec.models.wavelet_latent`), or the paper-literal codec with a learned analysis
  and synthesis transform around the DWT (:mod:`medcodec.models.transform`).
  ``MEDCODEC_LOSSY_MODEL`` (``wavelet`` / ``transform``) or the ``medcodec-wavelet`` /
  ``medcodec-transform`` codec names choose; decoding follows the stream's own tag. With the
  wavelet model, ``medcodec`` also tries the raster-scan coder with a bounded error whose
  distortion matches the wavelet stream's, and keeps whichever costs less in distortion +
  lambda * rate (:meth:`LearnedCodec.hybrid_lossy`): at high rates the bounded-error stream
  wins. A slice with padding outside its field of view is also coded with the padding filled
  and restored from a one-bit mask (``PADDED_TAG``). ``medcodec-wavelet`` codes with the
  wavelet model alone.

Every stream starts with a kind tag and the first bytes of the SHA-256 of the weights that
made it, then the image size and depth it codes. Decoding looks the weights up by that id among
the shipped files, so older streams keep decoding after newer weights ship; unknown weights
or a stream for another size are clear errors, never silent garbage. Inside, the lossy stream
carries a CRC32 of its quantised coefficients and the container a CRC32 of every slice.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from medcodec import weights
from medcodec.codecs.base import Codec, CodingSpec, Knob, Mode, checked_shape, unsigned_dtype
from medcodec.errors import CodecUnavailableError, CorruptStreamError
from medcodec.models.zoo import (
    CAUSAL,
    CAUSAL_INTER,
    ID_BYTES,
    LOSSY_MODELS,
    PEN,
    PEN_INTER,
    WAVELET,
    ZOO,
    ModelEntry,
    is_installed,
    load_model,
    lossless_model,
    lossy_model,
)
from medcodec.transforms.padding import fill_smooth, padding_mask

#: The shipped weights (the zoo's defaults), named here for the tools that load them.
DEFAULT_PEN_WEIGHTS = PEN.default
DEFAULT_INTER_WEIGHTS = PEN_INTER.default
DEFAULT_LOSSY_WEIGHTS = WAVELET.default
#: The lossy model ``medcodec`` uses unless MEDCODEC_LOSSY_MODEL names another.
DEFAULT_LOSSY_MODEL = "wavelet"
_SHAPE = struct.Struct("<IIB")  # rows, cols, bits: a stream decodes only as what it was
_HEAD = 3 + ID_BYTES + _SHAPE.size
#: A lossy slice whose padding is restored from a mask: ``MCM``, u8 version, u32 padding value,
#: u32 length of the mask's stream (a raster-scan stream of the 1-bit mask), that stream, then
#: the stream of the slice with its padding filled smoothly (``transforms.padding``).
PADDED_TAG = b"MCM"
_PADDED = struct.Struct("<BII")
_PADDED_VERSION = 1
#: The largest maximum error the lossy hybrid tries: beyond it (low rates) the bounded-error
#: stream never won on the validation CT, so it is not worth its encode time.
HYBRID_MAX_ERROR = 6

__all__ = ["DEFAULT_INTER_WEIGHTS", "DEFAULT_LOSSY_MODEL", "DEFAULT_LOSSY_WEIGHTS",
           "DEFAULT_PEN_WEIGHTS", "LearnedCodec", "TransformCodec", "WaveletLatentCodec",
           "load_model"]


class LearnedCodec(Codec):
    name = "medcodec"
    description = ("medcodec's learned codec: pixel-estimation network (lossless, "
                   "near-lossless), wavelet + cross-attention + hyperprior (lossy)")
    modes: ClassVar = frozenset({Mode.LOSSLESS, Mode.NEAR_LOSSLESS, Mode.LOSSY})
    min_bits = 1
    max_bits = 16
    knob = Knob("step", 0.5, 2048.0, rate_increases=False, integer=False)
    #: Lossless and near-lossless can use the previous decoded slice of a volume as context.
    uses_previous: ClassVar[bool] = True
    uses_weights: ClassVar[bool] = True

    @classmethod
    def supports_previous(cls, spec: CodingSpec) -> bool:
        return spec.mode is not Mode.LOSSY and any(
            entry.variable in os.environ or is_installed(entry.default)
            for entry in (CAUSAL_INTER, PEN_INTER))

    @classmethod
    def available(cls) -> bool:
        try:
            import safetensors  # noqa: F401
        except ImportError:
            return False
        return is_installed(PEN.default)

    @classmethod
    def version(cls) -> str:
        parts = []
        for entry in ZOO.values():
            try:  # the stream id (hash prefix), without parsing the weights
                digest = weights.sha256(entry.weights_name())[: 2 * ID_BYTES]
                parts.append(f"{entry.summary} {digest}")
            except CodecUnavailableError:
                parts.append(f"{entry.summary} missing")
        return "models: " + ", ".join(parts)

    #: The lossy model this codec name always uses (None: MEDCODEC_LOSSY_MODEL or the default).
    lossy_name: ClassVar[str | None] = None

    @classmethod
    def lossy_entry(cls) -> ModelEntry:
        """The zoo entry of the lossy model new streams are written with."""
        name = cls.lossy_name or os.environ.get("MEDCODEC_LOSSY_MODEL", DEFAULT_LOSSY_MODEL)
        try:
            return LOSSY_MODELS[name.strip().lower()]
        except KeyError:
            raise CodecUnavailableError(
                f"MEDCODEC_LOSSY_MODEL={name!r}: the lossy models are "
                f"{', '.join(sorted(LOSSY_MODELS))}") from None

    def check(self, bits: int, spec: CodingSpec) -> None:
        super().check(bits, spec)
        if spec.mode is Mode.LOSSY:
            entry = self.lossy_entry()
            if entry.variable not in os.environ and not is_installed(entry.default):
                raise CodecUnavailableError(f"the learned lossy model ({entry.summary}) is "
                                            "not installed")

    #: Lossy coding with the wavelet model also tries the bounded-error raster-scan stream
    #: (see the module docstring); the named lossy variants code with their model alone.
    hybrid: ClassVar[bool] = True

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec,
               previous: np.ndarray | None = None) -> bytes:
        """``previous``: the previous decoded slice, in this slice's value domain (volumes).

        Callers check the mode first (:func:`medcodec.codecs.slice.encode_slice` does).
        """
        array = np.asarray(array, dtype=np.int64)
        max_error = spec.max_error if spec.mode is Mode.NEAR_LOSSLESS else 0
        if spec.mode is Mode.LOSSY:
            entry = self.lossy_entry()
            if self.hybrid and entry is WAVELET and self._lossless_entry(False) is CAUSAL:
                return self.hybrid_lossy(array, bits, self.knob_value(spec))
            lossy, model_id = lossy_model(entry)
            body = lossy.encode(array, bits, self.knob_value(spec))
        else:
            entry = self._lossless_entry(previous is not None)
            pen, model_id = lossless_model(entry)
            body = pen.encode(array, bits, max_error, previous=previous)
        return entry.tag + model_id + _SHAPE.pack(*array.shape, bits) + body

    def hybrid_lossy(self, array: np.ndarray, bits: int, step: float) -> bytes:
        """The lossy stream of the wavelet model at ``step``, or the raster-scan stream with
        the maximum error D whose distortion is about the same (D(D + 1) / 3, uniform error
        over 2D + 1 values) when that costs less in ``mse + lambda * bpp``. lambda is the
        wavelet curve's own slope, 2 ln 2 * mse (at high rate, each bit quarters the mse).
        A slice with padding (``transforms.padding``) is also coded with the padding filled
        and restored from a mask (``PADDED_TAG``), and that wins when it costs less. The
        decoder follows the stream's tag, so every choice decodes with no flag."""
        stream, pixels, slope = self._wavelet_or_bounded(array, bits, step)
        mask = padding_mask(array)
        if mask is None:
            return stream
        value = int(array[mask][0])
        inner, inner_pixels, _ = self._wavelet_or_bounded(fill_smooth(array, mask), bits, step,
                                                          slope)
        causal, causal_id = lossless_model(CAUSAL)
        coded_mask = (CAUSAL.tag + causal_id + _SHAPE.pack(*array.shape, 1)
                      + causal.encode(mask.astype(np.int64), 1))
        padded = (PADDED_TAG + _PADDED.pack(_PADDED_VERSION, value, len(coded_mask))
                  + coded_mask + inner)
        restored = np.where(mask, value, inner_pixels)
        cheaper = (_rd_cost(padded, restored, array, slope)
                   < _rd_cost(stream, pixels, array, slope))
        return padded if cheaper else stream

    def _wavelet_or_bounded(self, array: np.ndarray, bits: int, step: float,
                            slope: float | None = None) -> tuple[bytes, np.ndarray, float]:
        """(stream, decoded pixels, lambda) of the cheaper of the wavelet stream and the
        bounded-error one (``hybrid_lossy``); ``slope``: lambda, else the wavelet stream's."""
        lossy, lossy_id = lossy_model(WAVELET)
        shape = _SHAPE.pack(*array.shape, bits)
        body, pixels = lossy.encode_with_reconstruction(array, bits, step)
        best = WAVELET.tag + lossy_id + shape + body
        mse = float(np.mean(np.square(pixels - array)))
        slope = 2.0 * math.log(2.0) * mse if slope is None else slope
        max_error = round((math.sqrt(1.0 + 12.0 * mse) - 1.0) / 2.0)
        if not 1 <= max_error <= HYBRID_MAX_ERROR:
            return best, pixels, slope
        causal, causal_id = lossless_model(CAUSAL)
        body, bounded_pixels = causal.encode_with_reconstruction(array, bits, max_error)
        bounded = CAUSAL.tag + causal_id + shape + body
        if _rd_cost(bounded, bounded_pixels, array, slope) < _rd_cost(best, pixels, array, slope):
            return bounded, bounded_pixels, slope
        return best, pixels, slope

    @staticmethod
    def _lossless_entry(with_previous: bool) -> ModelEntry:
        """The model for a lossless / near-lossless slice: your own interlaced network when
        MEDCODEC_PEN_WEIGHTS (MEDCODEC_INTER_WEIGHTS with a previous slice) names it, else
        the raster-scan estimator when installed, else the shipped interlaced network."""
        pen, causal = (PEN_INTER, CAUSAL_INTER) if with_previous else (PEN, CAUSAL)
        if pen.variable in os.environ:
            return pen
        if causal.variable in os.environ or is_installed(causal.default):
            return causal
        return pen

    @staticmethod
    def _entry(data: bytes) -> tuple[ModelEntry, bytes]:
        """(zoo entry, weights id) of a stream, or a clear error."""
        if len(data) < _HEAD or bytes(data[:3]) not in ZOO:
            raise CorruptStreamError("not a medcodec learned-codec stream")
        return ZOO[bytes(data[:3])], bytes(data[3 : 3 + ID_BYTES])

    def weights_of(self, data: bytes) -> list[tuple[str, str]]:
        """(kind tag, full SHA-256) of each weights file a decoder uses for this stream (two
        for a padded lossy slice: its mask's and its own)."""
        if bytes(data[:3]) == PADDED_TAG:
            mask, inner, _ = _split_padded(data)
            return self.weights_of(mask) + self.weights_of(inner)
        entry, wanted = self._entry(data)
        name = weights.find_by_id(wanted, entry.pattern, entry.extra_weights())
        if name is None:
            raise CodecUnavailableError(f"no weights file with id {wanted.hex()} is installed")
        return [(entry.tag.decode("ascii"), weights.sha256(name))]

    def decode(self, data: bytes, shape: tuple[int, int], bits: int,
               previous: np.ndarray | None = None,
               weights_sha256: Mapping[str, str] | None = None) -> np.ndarray:
        """``weights_sha256``: the container's full digests by stream kind (when it has them);
        the weights used must then be exactly those."""
        if not 1 <= bits <= self.max_bits:
            raise CorruptStreamError(f"medcodec stream claims {bits} bits")
        if bytes(data[:3]) == PADDED_TAG:
            if previous is not None:
                raise CorruptStreamError("a padded lossy medcodec stream never depends on the "
                                         "previous slice")
            coded_mask, inner, value = _split_padded(data)
            if value >= 1 << bits:
                raise CorruptStreamError("padded medcodec stream names a padding value outside "
                                         "the slice's range")
            mask = self.decode(coded_mask, shape, 1, weights_sha256=weights_sha256)
            pixels = self.decode(inner, shape, bits, weights_sha256=weights_sha256)
            return np.where(mask == 1, np.asarray(value, pixels.dtype), pixels)
        entry, wanted = self._entry(data)
        inter = entry in (PEN_INTER, CAUSAL_INTER)
        if inter != (previous is not None):
            raise CorruptStreamError("medcodec stream and container disagree on whether this "
                                     "slice depends on the previous one")
        if _SHAPE.unpack_from(data, _HEAD - _SHAPE.size) != (*shape, bits):
            raise CorruptStreamError("medcodec stream was coded for another image size or depth")
        if weights_sha256 is not None:
            name = self._exact_weights(entry, wanted, weights_sha256)
        else:
            name = weights.find_by_id(wanted, entry.pattern, entry.extra_weights())
        if name is None:
            raise CorruptStreamError(
                f"this stream was made with {entry.kind} model {wanted.hex()}, which this "
                f"install does not have: install the medcodec version that wrote it (or point "
                f"{entry.variable} at its weights)")
        try:
            if entry.kind in (PEN.kind, CAUSAL.kind):
                pen, _ = lossless_model(entry, name)
                if pen.inter != inter:
                    raise CorruptStreamError("medcodec stream names a model of the wrong kind")
                out = pen.decode(bytes(data[_HEAD:]), shape, bits, previous=previous)
            else:
                lossy, _ = lossy_model(entry, name)
                out = lossy.decode(bytes(data[_HEAD:]), shape, bits)
        except ValueError as exc:
            raise CorruptStreamError(f"medcodec stream does not decode: {exc}") from None
        return checked_shape(out.astype(unsigned_dtype(bits)), shape, self.name)

    @staticmethod
    def _exact_weights(entry: ModelEntry, wanted: bytes, digests: Mapping[str, str]) -> str:
        """The weights file whose SHA-256 is the one the container names for this kind."""
        kind = entry.tag.decode("ascii")
        expected = digests.get(kind)
        if expected is None:
            raise CorruptStreamError(f"the header's codec.weights_sha256 names no weights for "
                                     f"{kind} streams")
        if not expected.startswith(wanted.hex()):
            raise CorruptStreamError(
                f"the header names {entry.kind} weights {expected[:16]}..., but the stream was "
                f"made with weights {wanted.hex()}... (the file was edited or damaged)")
        extra = entry.extra_weights()
        name = weights.find_by_id(bytes.fromhex(expected), entry.pattern, extra)
        if name is None:
            near = weights.find_by_id(wanted, entry.pattern, extra)
            found = (f"this install's {Path(near).name} has SHA-256 {weights.sha256(near)}"
                     if near is not None else "this install has no weights with that id")
            raise CodecUnavailableError(
                f"this stream needs {entry.kind} weights with SHA-256 {expected}, but {found}: "
                f"install the medcodec version that wrote it (or point {entry.variable} at "
                "its weights)")
        return name


def _rd_cost(data: bytes, decoded: np.ndarray, original: np.ndarray, slope: float) -> float:
    """``mse + lambda * bpp`` of a candidate stream (``hybrid_lossy``)."""
    return (float(np.mean(np.square(decoded - original)))
            + slope * 8.0 * len(data) / original.size)


def _split_padded(data: bytes) -> tuple[bytes, bytes, int]:
    """(mask stream, slice stream, padding value) of a ``PADDED_TAG`` stream."""
    head = len(PADDED_TAG) + _PADDED.size
    if len(data) < head:
        raise CorruptStreamError("padded medcodec stream is truncated")
    version, value, mask_length = _PADDED.unpack_from(data, len(PADDED_TAG))
    if version != _PADDED_VERSION:
        raise CorruptStreamError("padded medcodec stream was made by another version of "
                                 "medcodec")
    if mask_length > len(data) - head:
        raise CorruptStreamError("padded medcodec stream is truncated")
    mask, inner = bytes(data[head : head + mask_length]), bytes(data[head + mask_length :])
    if PADDED_TAG in (mask[:3], inner[:3]):
        raise CorruptStreamError("padded medcodec stream is damaged (nested padding)")
    return mask, inner, value


class _LossyVariant(LearnedCodec):
    """medcodec's lossy coding with one named model (for comparing the two on one bench)."""

    modes: ClassVar = frozenset({Mode.LOSSY})
    uses_previous: ClassVar[bool] = False
    hybrid: ClassVar[bool] = False

    @classmethod
    def supports_previous(cls, spec: CodingSpec) -> bool:
        return False

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec,
               previous: np.ndarray | None = None) -> bytes:
        self.check(bits, spec)  # lossy only: a lossless request is an error, not a fallback
        return super().encode(array, bits, spec, previous)

    @classmethod
    def available(cls) -> bool:
        entry = LOSSY_MODELS[cls.lossy_name or DEFAULT_LOSSY_MODEL]
        return LearnedCodec.available() and (entry.variable in os.environ
                                             or is_installed(entry.default))


class WaveletLatentCodec(_LossyVariant):
    name = "medcodec-wavelet"
    description = "medcodec lossy: wavelet latent + cross-attention context + hyperprior"
    lossy_name = "wavelet"


class TransformCodec(_LossyVariant):
    name = "medcodec-transform"
    description = ("medcodec lossy: DWT + CAL + learned analysis/synthesis transform, "
                   "hyperprior, checkerboard context, 3x3 filter")
    lossy_name = "transform"
