"""One interface for every 2-D codec, standard or learned (the imagecodecs convention, as a class).

A codec sees one unsigned 2-D array whose values fit in ``bits`` bits (the container has already
shifted signed data by its minimum) and returns bytes; ``decode`` gives back an array of the same
shape. Codecs never see DICOM, files or volumes: that keeps them swappable and testable alone.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from medcodec.errors import CodecUnavailableError, CorruptStreamError, InputError


class Mode(str, enum.Enum):
    LOSSLESS = "lossless"
    NEAR_LOSSLESS = "near-lossless"
    LOSSY = "lossy"


@dataclass(frozen=True)
class Knob:
    """A codec's quality knob, so a rate search can bisect it without knowing the codec."""

    name: str
    low: float
    high: float
    #: True when a larger value gives more bits (quality); False for distance/QP-like knobs.
    rate_increases: bool = True
    integer: bool = False
    #: Search on a log axis (steps, distances); None: decided by the range (see rate.py).
    log_scale: bool | None = None


@dataclass(frozen=True)
class CodingSpec:
    """What the caller asked for: the mode and its one parameter."""

    mode: Mode = Mode.LOSSLESS
    max_error: int = 0
    quality: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.mode is Mode.NEAR_LOSSLESS and self.max_error < 1:
            raise ValueError("near-lossless mode needs --max-error of at least 1")
        if self.mode is not Mode.NEAR_LOSSLESS and self.max_error:
            raise ValueError("--max-error is only meaningful in near-lossless mode")
        if self.mode is Mode.LOSSY and self.quality is None:
            raise ValueError("lossy mode needs --quality Q (the codec's knob) or --bpp B "
                             "(a target rate)")

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"mode": self.mode.value}
        if self.mode is Mode.NEAR_LOSSLESS:
            out["max_error"] = self.max_error
        if self.mode is Mode.LOSSY:
            out["quality"] = self.quality
        return out


class Codec(ABC):
    """Base class of every registered codec."""

    #: Registry name, as typed on the command line.
    name: ClassVar[str]
    #: Short human description for ``medcodec info --codecs``.
    description: ClassVar[str] = ""
    modes: ClassVar[frozenset[Mode]] = frozenset({Mode.LOSSLESS})
    min_bits: ClassVar[int] = 1
    max_bits: ClassVar[int] = 16
    #: The lossy quality knob, or None when the codec has no lossy mode.
    knob: ClassVar[Knob | None] = None
    #: DICOM Lossy Image Compression Method (0028,2114) defined term, if one exists.
    dicom_method: ClassVar[str | None] = None
    #: Largest image side the codec's library codes (the container allows 65536).
    max_side: ClassVar[int] = 1 << 16
    #: Whether streams name model weights (``codec.weights_sha256`` in the container).
    uses_weights: ClassVar[bool] = False
    #: Whether the codec can take the previous decoded slice as context (``previous=`` in
    #: encode and decode); a container's ``inter_slice`` is refused for codecs that cannot.
    uses_previous: ClassVar[bool] = False

    #: DICOM transfer syntaxes of :meth:`dicom_encode`'s codestreams: (lossless, lossy) UIDs,
    #: or None for a codec DICOM has no transfer syntax for.
    dicom_syntaxes: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def supports_previous(cls, spec: CodingSpec) -> bool:
        """Whether slices coded with ``spec`` can use the previous slice (installed models)."""
        return False

    def dicom_knob(self, bits: int) -> Knob:
        """The setting :meth:`dicom_encode` takes for lossy frames of ``bits`` bits."""
        raise CodecUnavailableError(f"codec {self.name!r} has no DICOM transfer syntax")

    def dicom_encode(self, frame: np.ndarray, bits: int, signed: bool,
                     setting: float | None = None) -> bytes:
        """One DICOM-conformant codestream of a frame of *stored* values (signed or not).

        Unlike :meth:`encode` (min-shifted unsigned data for our container), the codestream
        states what DICOM states (PS3.5 8.2): precision = Bits Stored, signedness = Pixel
        Representation. ``setting`` is None for lossless, else a :meth:`dicom_knob` value.
        """
        raise CodecUnavailableError(f"codec {self.name!r} has no DICOM transfer syntax")

    @classmethod
    def available(cls) -> bool:
        """Whether the library behind this codec is installed and working."""
        return True

    @classmethod
    def version(cls) -> str:
        """Version string of the library that does the work."""
        return "builtin"

    def check(self, bits: int, spec: CodingSpec) -> None:
        """Raise a clear error when this codec cannot carry ``bits`` bits in ``spec.mode``."""
        if not self.available():
            raise CodecUnavailableError(f"codec {self.name!r} is not available on this install")
        if spec.mode not in self.modes:
            modes = ", ".join(sorted(m.value for m in self.modes))
            raise CodecUnavailableError(
                f"codec {self.name!r} has no {spec.mode.value} mode (it offers: {modes})"
            )
        if bits > self.max_bits:
            raise CodecUnavailableError(
                f"codec {self.name!r} carries at most {self.max_bits} bits, this image needs {bits}"
            )

    def check_shape(self, rows: int, cols: int) -> None:
        """Raise a clear error when the library cannot code a ``rows`` x ``cols`` image."""
        if max(rows, cols) > self.max_side:
            raise CodecUnavailableError(
                f"codec {self.name!r} codes at most {self.max_side} pixels per side, this image "
                f"is {rows}x{cols}"
            )

    def min_chunk_bytes(self, rows: int, cols: int, bits: int) -> int:
        """Fewest bytes a stream of this codec can hold a ``rows`` x ``cols`` slice in.

        A lower bound the format itself imposes (with a safety margin), so a reader can refuse
        a forged shape before it allocates for it; codecs with no useful bound say 1.
        """
        return 1

    def knob_value(self, spec: CodingSpec) -> float:
        """The lossy setting, refused with a clear message when outside the knob's range."""
        if self.knob is None or spec.quality is None:
            raise InputError(f"{self.name}: no lossy quality knob")
        value = float(spec.quality)
        if not self.knob.low <= value <= self.knob.high:
            raise InputError(
                f"{self.name}: {self.knob.name} must be in {self.knob.low:g}..{self.knob.high:g}, "
                f"got {value:g}"
            )
        return value

    def prepared(self, array: np.ndarray, bits: int,
                 spec: CodingSpec) -> tuple[np.ndarray, float | None]:
        """The preamble every library-backed encode shares: the request checked, the array as
        contiguous unsigned samples of ``bits`` bits, and the lossy setting (None otherwise)."""
        self.check(bits, spec)
        data = np.ascontiguousarray(array, dtype=unsigned_dtype(bits))
        return data, (self.knob_value(spec) if spec.mode is Mode.LOSSY else None)

    @abstractmethod
    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        """Code a 2-D unsigned array whose values are all below ``2**bits``."""

    @abstractmethod
    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        """Decode bytes made by :meth:`encode` back to a 2-D array of ``shape``."""


class ImagecodecsCodec(Codec):
    """A codec backed by one imagecodecs codec, which answers availability and version."""

    #: imagecodecs' name for the codec, e.g. "JPEGXL" (``imagecodecs.JPEGXL``,
    #: ``imagecodecs.jpegxl_version``).
    library: ClassVar[str]

    @classmethod
    def available(cls) -> bool:
        try:
            import imagecodecs
        except ImportError:
            return False
        return bool(getattr(imagecodecs, cls.library).available)

    @classmethod
    def version(cls) -> str:
        import imagecodecs

        lib_version = getattr(imagecodecs, f"{cls.library.lower()}_version")()
        return f"{lib_version} (imagecodecs {imagecodecs.__version__})"


def unsigned_dtype(bits: int) -> np.dtype:
    """Smallest unsigned dtype that holds ``bits`` bits."""
    if bits <= 8:
        return np.dtype(np.uint8)
    if bits <= 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def decode_into(decoder: Callable[..., np.ndarray], data: bytes, shape: tuple[int, int],
                bits: int, label: str, **kwargs: object) -> np.ndarray:
    """Run a library decoder into a pre-allocated array of the promised shape.

    The ``out`` array bounds what a forged stream can make the library allocate; library errors
    become CorruptStreamError; values beyond ``bits`` (lossy overshoot) are clamped.
    """
    out = np.empty(shape, dtype=unsigned_dtype(bits))
    try:
        decoded = decoder(data, out=out, **kwargs)
    except Exception as exc:  # each library raises its own error types
        raise CorruptStreamError(f"{label} stream does not decode: {exc}") from None
    decoded = checked_shape(decoded, shape, label)
    if bits < decoded.dtype.itemsize * 8:
        np.minimum(decoded, (1 << bits) - 1, out=decoded)
    return decoded


def twos_complement_pattern(frame: np.ndarray, bits: int) -> np.ndarray:
    """Stored values as their two's-complement bit pattern in ``bits`` bits, unsigned: how
    signed data travel in codecs without signed samples (JPEG-LS, JPEG XL; PS3.5 A.4.3)."""
    mask = (1 << bits) - 1
    return (frame.astype(np.int64) & mask).astype(np.uint8 if bits <= 8 else np.uint16)


def checked_shape(decoded: np.ndarray, shape: tuple[int, int], codec: str) -> np.ndarray:
    """Make sure a decoder gave back what the container promised, else a corrupt-stream error."""
    decoded = np.asarray(decoded)
    if decoded.ndim == 3 and decoded.shape[-1] == 1:
        decoded = decoded[..., 0]
    if tuple(decoded.shape) != tuple(shape):
        raise CorruptStreamError(
            f"{codec} stream decoded to shape {decoded.shape}, expected {tuple(shape)}"
        )
    return decoded
