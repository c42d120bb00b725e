"""medcodec as a numcodecs codec: CT volumes in Zarr, one compressed chunk per slice.

Training pipelines read volumes from Zarr with random access; this codec lets them keep those
volumes losslessly (or with a bounded error) compressed with any codec of medcodec's registry,
standard or learned, at native bit depth. Each chunk is coded plane by plane exactly as the
``.mdcx`` pipeline codes slices: shifted by its minimum, coded at its effective bit depth,
decoded again and checked before it is stored, with a CRC32 of the decoded plane checked on
every read (a decoder that differs from the encoder's is reported, never returned silently).

Chunk layout (little-endian)::

    b"MDZ1" | u8 header length n | n bytes UTF-8 JSON {"dtype", "shape", "codec"}
    | per plane: i64 shift, u8 bits, u32 crc32, u32 length | the planes' codestreams

Example (zarr-python 3, Zarr format 2; ``zarr_format=3`` works too)::

    import medcodec, zarr
    from medcodec.zarr_codec import MedcodecCodec, from_zarr, read_settings, to_zarr

    ct = medcodec.read("series_folder/")                 # MedImage, (slices, rows, cols)
    arr = to_zarr(ct, "ct.zarr", codec="lerc")           # chunks = (1, rows, cols)
    arr.attrs["medcodec"]["pixel_spacing"]               # spacing, rescale, orientation, ...
    slab = zarr.open_array("ct.zarr", mode="r")[40:44]   # reads 4 chunks only
    back = from_zarr("ct.zarr")                          # MedImage again, identical pixels
    with read_settings():                                # whole volumes: keep all cores busy
        volume = zarr.open_array("ct.zarr", mode="r")[:]

    # or by hand, as any numcodecs compressor:
    zarr.create_array("x.zarr", shape=(n, r, c), chunks=(1, r, c), dtype="int16",
                      compressors=MedcodecCodec(codec="jpegls"), zarr_format=2)

Importing this module registers the codec id ``"medcodec"`` with numcodecs (and
``"numcodecs.medcodec"`` with zarr for the v3 format); a reader in another process must import
it too, unless the package's ``numcodecs.codecs`` entry point is installed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from numcodecs.abc import Codec as _NumcodecsCodec
from numcodecs.compat import ndarray_copy
from numcodecs.registry import register_codec

from medcodec import codecs
from medcodec.codecs.base import Codec, CodingSpec
from medcodec.container.schema import decode_limit
from medcodec.errors import (
    CodecUnavailableError,
    CorruptStreamError,
    MedcodecError,
    OutputError,
)
from medcodec.image import MedImage, image_facts, image_from_facts

_MAGIC = b"MDZ1"
_PLANE = struct.Struct("<qBII")
#: Metadata key under the array's attributes.
ATTRS_KEY = "medcodec"
#: Largest plane a chunk header may promise (the decoder allocates no more).
_MAX_PLANE_PIXELS = 1 << 28


@functools.lru_cache(maxsize=32)
def resolve_codec(name: str) -> Codec:
    """A registry codec by name; modules not yet wired into the registry are found too.

    Cached: chunks are decoded by the thousand, and codec objects are stateless.
    """
    try:
        return codecs.get(name)
    except CodecUnavailableError as exc:
        if "unknown codec" not in str(exc):
            raise
    import importlib
    import inspect
    import re

    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):  # a chunk's text, never a module path
        raise CodecUnavailableError(
            f"unknown codec {name[:40]!r}; known codecs: {', '.join(codecs.names())}")
    try:
        module = importlib.import_module(f"medcodec.codecs.{name}")
    except ImportError:
        raise CodecUnavailableError(
            f"unknown codec {name!r}; known codecs: {', '.join(codecs.names())}") from None
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if issubclass(cls, Codec) and getattr(cls, "name", None) == name:
            if not cls.available():
                raise CodecUnavailableError(f"codec {name!r} is not available on this install")
            return cls()
    raise CodecUnavailableError(f"unknown codec {name!r}")


class MedcodecCodec(_NumcodecsCodec):
    """numcodecs codec: each 2-D plane of a chunk coded by a medcodec codec (checked, CRC'd).

    ``codec`` is a registry name (``auto`` = JPEG-LS up to 16 bits, deflate above); ``mode``
    ``lossless`` (default), ``near-lossless`` with ``max_error`` or ``lossy`` with ``quality``.
    """

    codec_id = "medcodec"

    def __init__(self, codec: str = "auto", mode: str = "lossless", max_error: int | None = None,
                 quality: float | None = None) -> None:
        from medcodec.codecs.slice import make_spec

        self.codec = str(codec)
        self.mode = str(mode)
        self.max_error = None if max_error is None else int(max_error)
        self.quality = None if quality is None else float(quality)
        self._spec: CodingSpec = make_spec(self.mode, self.max_error, self.quality)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"id": self.codec_id, "codec": self.codec, "mode": self.mode}
        if self.max_error is not None:
            config["max_error"] = self.max_error
        if self.quality is not None:
            config["quality"] = self.quality
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MedcodecCodec:
        """Accept configurations with or without their ``id`` (numcodecs passes both)."""
        return cls(**{k: v for k, v in config.items() if k != "id"})

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.get_config().items()
                        if k not in ("id", "codec", "mode"))
        return f"MedcodecCodec(codec={self.codec!r}, mode={self.mode!r}{extra})"

    def encode(self, buf: Any) -> bytes:
        from medcodec.codecs.slice import encode_slice
        from medcodec.image import value_range_bits

        array = np.asarray(buf)
        if array.ndim < 2:
            raise MedcodecError(
                "the medcodec codec needs chunks with their shape (a Zarr compressor or "
                f"serializer passes them); got a flat buffer of {array.size} items")
        if array.dtype.kind not in "ui" or array.dtype.itemsize > 4:
            raise MedcodecError(f"the medcodec codec codes integer pixels, not {array.dtype}")
        shape = array.shape
        planes = np.ascontiguousarray(array).reshape(-1, shape[-2], shape[-1])
        bits = value_range_bits(int(planes.min()), int(planes.max())) if planes.size else 1
        codec = (codecs.choose(self.codec, bits, self._spec) if self.codec == "auto"
                 else resolve_codec(self.codec))
        header = json.dumps({"dtype": array.dtype.str, "shape": list(shape),
                             "codec": codec.name}, separators=(",", ":")).encode()
        table, payload = [], []
        for plane in planes:
            coded = encode_slice(codec, plane, self._spec)
            record = coded.record
            table.append(_PLANE.pack(record.shift, record.bits, record.crc32, len(coded.data)))
            payload.append(coded.data)
        return b"".join([_MAGIC, struct.pack("<B", len(header)), header, *table, *payload])

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        from medcodec.codecs.slice import decode_slice

        data = memoryview(buf).cast("B") if not isinstance(buf, bytes) else memoryview(buf)
        if bytes(data[:4]) != _MAGIC or len(data) < 5:
            raise CorruptStreamError("not a medcodec Zarr chunk (bad magic)")
        size = data[4]
        try:
            header = json.loads(bytes(data[5 : 5 + size]))
            dtype = np.dtype(str(header["dtype"]))
            shape = tuple(int(n) for n in header["shape"])
            codec = resolve_codec(str(header["codec"]))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise CorruptStreamError(f"medcodec Zarr chunk header is damaged ({exc})") from None
        if dtype.kind not in "ui" or dtype.itemsize > 4:
            raise CorruptStreamError(f"medcodec Zarr chunk dtype {dtype} is invalid")
        if (not 2 <= len(shape) <= 32 or min(shape) < 1 or max(shape) > 1 << 32
                or shape[-2] * shape[-1] > _MAX_PLANE_PIXELS):
            raise CorruptStreamError(f"medcodec Zarr chunk shape {shape} is invalid")
        rows, cols = shape[-2], shape[-1]
        n_planes = math.prod(shape[:-2])
        total = n_planes * rows * cols * dtype.itemsize
        if n_planes > len(data) or total > decode_limit(len(data)):
            raise CorruptStreamError(f"medcodec Zarr chunk of {len(data)} bytes cannot hold "
                                     f"shape {shape}")
        if out is not None and np.asarray(out).nbytes != total:
            raise CorruptStreamError(f"medcodec Zarr chunk of shape {shape} does not fit the "
                                     "array's chunk")
        pos = 5 + size
        records = []
        for _ in range(n_planes):
            if pos + _PLANE.size > len(data):
                raise CorruptStreamError("medcodec Zarr chunk is truncated")
            records.append(_PLANE.unpack(data[pos : pos + _PLANE.size]))
            pos += _PLANE.size
        result = np.empty((n_planes, rows, cols), dtype=dtype)
        for index, (shift, bits, crc, length) in enumerate(records):
            if pos + length > len(data) or not 1 <= bits <= dtype.itemsize * 8:
                raise CorruptStreamError("medcodec Zarr chunk is truncated or damaged")
            result[index] = decode_slice(codec, bytes(data[pos : pos + length]), shift, bits,
                                         crc, (rows, cols), dtype,
                                         what=f"plane {index} of a medcodec Zarr chunk")
            pos += length
        result = result.reshape(shape)
        return ndarray_copy(result, out) if out is not None else result


register_codec(MedcodecCodec)

try:  # zarr >= 3.1.3: the same codec as a Zarr v3 array -> bytes serializer
    from zarr.codecs.numcodecs._codecs import _NumcodecsArrayBytesCodec
    from zarr.registry import register_codec as _register_zarr_codec

    class MedcodecZarr3(_NumcodecsArrayBytesCodec, codec_name="medcodec"):
        """Zarr v3 serializer wrapping :class:`MedcodecCodec` (``numcodecs.medcodec``)."""

    _register_zarr_codec("numcodecs.medcodec", MedcodecZarr3)
except ImportError:  # zarr missing or too old: Zarr format 2 still works
    MedcodecZarr3 = None  # type: ignore[assignment,misc]


#: zarr-python 3 settings for reading many slice chunks: one chunk per decode task, many in
#: flight and a thread per core keep every core decoding. On the 2-core machine a 134-slice CT
#: loads with HTJ2K in 0.18-0.27 s median, with LERC in 0.16 s (see docs/ECOSYSTEM.md).
READ_SETTINGS = {"codec_pipeline.batch_size": 1, "async.concurrency": 64,
                 "threading.max_workers": max(2, os.cpu_count() or 1)}


def read_settings() -> contextlib.AbstractContextManager[Any]:
    """``with read_settings(): array[...]``: READ_SETTINGS for zarr-python 3, no-op otherwise."""
    import zarr

    config = getattr(zarr, "config", None)
    if config is None or not hasattr(config, "set"):
        return contextlib.nullcontext()
    return config.set(READ_SETTINGS)


def volume_attrs(image: MedImage) -> dict[str, Any]:
    """What a reader needs besides the pixels: geometry, rescale, photometric, source facts."""
    return image_facts(image)


def to_zarr(image: MedImage, store: Any, codec: str = "auto", mode: str = "lossless",
            max_error: int | None = None, quality: float | None = None,
            zarr_format: int = 2, overwrite: bool = False) -> Any:
    """Write ``image`` as a Zarr array, one chunk per slice, metadata in ``attrs["medcodec"]``."""
    import zarr

    compressor = MedcodecCodec(codec=codec, mode=mode, max_error=max_error, quality=quality)
    shape = image.pixels.shape
    common = {"shape": shape, "chunks": (1, *shape[1:]), "dtype": image.pixels.dtype,
              "fill_value": 0, "overwrite": overwrite, "zarr_format": zarr_format}
    if not overwrite and isinstance(store, str | os.PathLike) and os.path.exists(store):
        raise OutputError(f"{store}: output exists (use overwrite=True to replace it)")
    if zarr_format == 2:
        array = zarr.create_array(store, compressors=compressor, **common)
    else:
        if MedcodecZarr3 is None:
            raise CodecUnavailableError("the Zarr v3 format needs zarr >= 3.1.3 "
                                        "(use zarr_format=2)")
        import warnings

        with warnings.catch_warnings():  # "numcodecs codecs are not in the v3 spec"
            warnings.simplefilter("ignore")
            serializer = MedcodecZarr3(**{k: v for k, v in compressor.get_config().items()
                                          if k != "id"})
        array = zarr.create_array(store, serializer=serializer, compressors=None, **common)
    array[...] = image.pixels
    array.attrs[ATTRS_KEY] = volume_attrs(image)
    return array


def from_zarr(source: Any, slices: slice | None = None) -> MedImage:
    """Read an array written by :func:`to_zarr` (a path, store or array) back as a MedImage."""
    import zarr

    array = source if hasattr(source, "attrs") and hasattr(source, "shape") else \
        zarr.open_array(source, mode="r")
    facts: Mapping[str, Any] = dict(array.attrs.get(ATTRS_KEY) or {})
    with read_settings():
        pixels = np.asarray(array[slices if slices is not None else slice(None)])
    positions = facts.get("slice_positions")
    if positions is not None and slices is not None:
        positions = np.asarray(positions, dtype=np.float64)[slices]
    return image_from_facts(
        pixels, dict(facts), slice_positions=positions, source_format="zarr",
        source_path=str(source) if isinstance(source, str | os.PathLike) else None)
