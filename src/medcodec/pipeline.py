"""Compress and decompress whole images: read -> per-slice coding -> container, and back.

Every slice is shifted to unsigned by its own minimum, coded by the chosen codec at its effective
bit depth, then decoded again at once and checked (identical for lossless, within the bound for
near-lossless) before it goes into the container: wrong pixels are the failure users fear most.
A CRC32 of the decoded pixels is stored per slice, so any decoder mismatch later (another
machine, another library build) is reported instead of returning silent garbage.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from medcodec import codecs
from medcodec._version import __version__
from medcodec.codecs.base import Codec, CodingSpec, Mode
from medcodec.codecs.slice import decode_slice, encode_slice, make_spec, pixel_crc32
from medcodec.container import (
    ContainerReader,
    attachments_size,
    pack,
    pack_attachments,
    select_slice_attachments,
    unpack_attachments,
)
from medcodec.container.schema import (
    MAX_SIDE,
    MAX_SLICE_PIXELS,
    MAX_SLICES,
    HeaderError,
    attachment_limit,
    decode_limit,
    decoded_bytes,
    layout_crc32,
    validate_header,
    validate_image,
)
from medcodec.errors import (
    CorruptStreamError,
    InputError,
    MedcodecError,
    UnsupportedError,
)
from medcodec.image import (
    MedImage,
    image_facts,
    image_from_facts,
    stored_value_range,
    value_range_bits,
)

__all__ = ["MAX_SIDE", "MAX_SLICES", "MAX_SLICE_PIXELS", "ContainerFile", "compress",
           "decompress", "make_spec", "open_container", "pixel_crc32"]

ProgressFn = Callable[[int], None]


def _image_header(image: MedImage) -> dict[str, Any]:
    dtype = image.pixels.dtype.name
    return {"slices": image.n_slices, "rows": image.rows, "cols": image.cols, "dtype": dtype,
            "layout_crc32": layout_crc32(dtype, image.n_slices, image.rows, image.cols),
            **image_facts(image), "value_range": list(stored_value_range(image))}


def _label(image: MedImage) -> str:
    return f"{image.source_path}: " if image.source_path else ""


def _refuse(image: MedImage, problem: str) -> UnsupportedError:
    return UnsupportedError(f"{_label(image)}a medcodec container cannot hold this image: "
                            f"{problem}; nothing was written")


def check_storable(image: MedImage) -> dict[str, Any]:
    """The ``image`` header section of ``image``, checked with the reader's own rules.

    Runs before any coding, so an image the reader would refuse (too large, empty, a field of
    the wrong shape) fails at once, naming the input, instead of after minutes of encoding.
    """
    if image.pixels.size == 0:
        raise _refuse(image, f"it is empty (shape {'x'.join(map(str, image.pixels.shape))})")
    try:
        section = validate_image(_image_header(image))
    except HeaderError as exc:
        raise _refuse(image, exc.detail) from None
    if image.attachments:
        size, limit = attachments_size(image.attachments), attachment_limit(image.n_slices)
        if size > limit:
            raise _refuse(image, f"its side data (source headers) is {size} bytes, more than "
                                 f"the {limit} bytes a container of {image.n_slices} slice(s) "
                                 "may carry")
    return section


def compress(
    image: MedImage,
    codec: str = "auto",
    mode: str = "lossless",
    max_error: int | None = None,
    quality: float | None = None,
    progress: ProgressFn | None = None,
    verify: bool = True,
    bpp: float | None = None,
    inter_slice: int | None = None,
) -> bytes:
    """Code ``image`` slice by slice into container bytes.

    ``codec="auto"`` picks the default codec for the data (JPEG-LS up to 16 bits, deflate above;
    JPEG 2000 for lossy) and the header records what was actually used. ``bpp`` (lossy only)
    searches the codec's quality knob per slice for that many bits per pixel.
    ``inter_slice=K`` lets codecs that can (medcodec lossless/near-lossless) use the previous
    decoded slice as context, with a self-contained key slice every K slices (random access
    decodes from the key slice before the one asked for).
    """
    if inter_slice is not None and not 1 <= inter_slice <= MAX_SLICES:
        raise MedcodecError(f"--inter-slice must be from 1 to {MAX_SLICES}, got {inter_slice}")
    if bpp is not None:
        if mode != Mode.LOSSY.value or quality is not None:
            raise MedcodecError("--bpp needs --mode lossy and no --quality")
        if not (bpp > 0 and math.isfinite(bpp)):
            raise MedcodecError(f"--bpp must be a positive number, got {bpp}")
        spec = CodingSpec(Mode.LOSSY, 0, 0.0)  # the per-slice search replaces the quality
    else:
        spec = make_spec(mode, max_error, quality)
    image_section = check_storable(image)  # the reader's limits, before any coding
    bits = value_range_bits(int(image.pixels.min()), int(image.pixels.max()))
    chosen = codecs.choose(codec, bits, spec)
    chosen.check_shape(image.rows, image.cols)
    if bpp is not None and chosen.knob is None:
        raise MedcodecError(f"codec {chosen.name} has no quality knob to search for --bpp")
    if inter_slice is not None and not chosen.supports_previous(spec):
        inter_slice = None  # this codec and mode code every slice alone
    chunks: list[bytes] = []
    records: list[dict[str, Any]] = []
    decoded = None
    clip = stored_value_range(image)
    for index in range(image.n_slices):
        previous = decoded if inter_slice and index % inter_slice else None
        coded = encode_slice(chosen, image.pixels[index], spec, verify=verify,
                             target_bpp=bpp, previous=previous, clip=clip)
        decoded = coded.decoded
        chunks.append(coded.data)
        records.append(coded.record.as_dict())
        if progress:
            progress(1)
    header: dict[str, Any] = {
        "writer": f"medcodec {__version__}",
        "codec": {"name": chosen.name, "version": chosen.version(), **spec.as_dict(),
                  **({"quality": None, "target_bpp": bpp} if bpp is not None else {}),
                  "weights_sha256": _weights_digests(chosen, chunks),
                  "dicom_method": chosen.dicom_method},
        "image": image_section,
        "slices": records,
        "inter_slice": inter_slice,
        "original_bytes": int(image.pixels.nbytes),
        "attachments": None,
    }
    if image.attachments:
        header["attachments"] = {"chunk": len(chunks), "names": list(image.attachments)}
        chunks.append(pack_attachments(image.attachments))
    try:
        data = pack(header, chunks)
        ContainerFile(io.BytesIO(data), "<new container>")  # exactly what a reader checks
    except (HeaderError, CorruptStreamError, ValueError) as exc:
        raise _refuse(image, getattr(exc, "detail", str(exc))) from None
    return data


def _weights_digests(codec: Codec, chunks: list[bytes]) -> dict[str, str] | None:
    """``codec.weights_sha256``: the full SHA-256 of the weights behind each stream kind."""
    if not codec.uses_weights:
        return None
    digests: dict[str, str] = {}
    for chunk in chunks:
        for kind, digest in codec.weights_of(chunk):  # type: ignore[attr-defined]
            if digests.setdefault(kind, digest) != digest:
                raise MedcodecError(f"slices of one container were coded with two different "
                                    f"{kind} weights files")
    return digests


# --------------------------------------------------------------------------------------------
# Decoding


def lossy_compression_meta(codec: dict[str, Any], ratio: float) -> dict[str, Any] | None:
    """What a decoded image's ``meta["lossy_compression"]`` says about its coding, or None
    for lossless coding: the ratio, the DICOM method term of the codec (may be None) and a
    description. The DICOM writer turns it into (0028,2110/2112/2114).

    ``codec`` is a container header's codec entry: ``name``, ``mode``, ``max_error`` and
    ``dicom_method``.
    """
    if codec.get("mode") == Mode.LOSSLESS.value:
        return None
    return {
        "ratio": ratio,
        "dicom_method": codec.get("dicom_method"),
        "codec": codec["name"],
        "description": (
            f"medcodec {codec['name']} {codec.get('mode')} compression"
            + (f", max error {codec['max_error']}" if codec.get("max_error") else "")
        ),
    }


class ContainerFile:
    """An open container: header facts, and any slice decoded on demand.

    Opening validates the whole header against the format's schema, then checks that the
    codec can carry what the header claims and that the chunks can plausibly hold the pixels
    it promises, all before anything is decoded or allocated.
    """

    def __init__(self, stream: BinaryIO, name: str = "<stream>") -> None:
        self.name = name
        self.reader = ContainerReader(stream, name)
        self.header = self.reader.header
        validate_header(self.header, len(self.reader.entries))
        info = self.header["codec"]
        self.codec = codecs.get(info["name"])
        self.dtype = np.dtype(self.header["image"]["dtype"])
        self.key_interval: int | None = self.header.get("inter_slice")
        clip = self.header["image"].get("value_range")  # absent in streams before 0.2
        self.clip: tuple[int, int] | None = None if clip is None else (clip[0], clip[1])
        if (self.key_interval or 1) > 1 and not self.codec.uses_previous:
            raise HeaderError("inter_slice", f"= {self.key_interval}, but codec {self.codec.name} "
                              "codes every slice alone (it takes no previous slice)")
        self._weights = info.get("weights_sha256") if self.codec.uses_weights else None
        self._check_plausible()
        self._last: tuple[int, np.ndarray] | None = None  # for sequential inter-slice decoding

    def _check_plausible(self) -> None:
        """Refuse a shape the chunks cannot hold, before anything is allocated for it."""
        rows, cols = self.shape
        for index, record in enumerate(self.header["slices"]):
            length = self.reader.entries[index].length
            floor = self.codec.min_chunk_bytes(rows, cols, record["bits"])
            if length < floor:
                raise HeaderError(
                    f"slices[{index}]", f"is a {length}-byte {self.codec.name} chunk, which "
                    f"cannot hold a {rows}x{cols} slice (at least {floor} bytes)")
        total = decoded_bytes(self.header["image"])
        if total > decode_limit(self.reader.size):
            raise HeaderError(
                "image", f"promises {total} bytes of pixels from a {self.reader.size}-byte file, "
                "more than any real image expands (a decompression bomb?)")

    @property
    def n_slices(self) -> int:
        return int(self.header["image"]["slices"])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.header["image"]["rows"]), int(self.header["image"]["cols"])

    def decode_slice(self, index: int) -> np.ndarray:
        if not 0 <= index < self.n_slices:
            raise InputError(f"{self.name}: slice {index} does not exist "
                             f"(the file has {self.n_slices})")
        if not self.key_interval:
            return self._decode_one(index, None)
        key = index - index % self.key_interval
        start, previous = key, None
        if self._last is not None and key <= self._last[0] < index:
            start, previous = self._last[0] + 1, self._last[1]
        for j in range(start, index + 1):  # from the key slice (or the last one decoded)
            previous = self._decode_one(j, previous if j > key else None)
        self._last = (index, previous)
        return previous

    def _decode_one(self, index: int, previous: np.ndarray | None) -> np.ndarray:
        record = self.header["slices"][index]
        context = {} if self._weights is None else {"weights_sha256": self._weights}
        return decode_slice(self.codec, self.reader.read_chunk(index), record["shift"],
                            record["bits"], record["crc32"], self.shape, self.dtype,
                            previous=previous, clip=self.clip, what=f"slice {index}", **context)

    def attachments(self) -> dict[str, bytes]:
        info = self.header.get("attachments")
        if not info:
            return {}
        return unpack_attachments(self.reader.read_chunk(info["chunk"]), info["names"],
                                  attachment_limit(self.n_slices))

    def image(self, slices: Iterable[int] | None = None,
              progress: ProgressFn | None = None) -> MedImage:
        indices = list(range(self.n_slices)) if slices is None else list(slices)
        rows, cols = self.shape
        pixels = None
        for out_index, index in enumerate(indices):
            plane = self.decode_slice(index)
            if pixels is None:  # allocated once a first slice has really decoded
                pixels = np.empty((len(indices), rows, cols), dtype=self.dtype)
            pixels[out_index] = plane
            if progress:
                progress(1)
        if pixels is None:
            pixels = np.empty((0, rows, cols), dtype=self.dtype)
        img = self.header["image"]
        attachments = self.attachments()
        meta = dict(img.get("meta") or {})
        positions = img.get("slice_positions")
        if positions is not None:
            positions = np.asarray(positions, dtype=np.float64)[indices]
        if slices is not None:
            attachments = select_slice_attachments(attachments, meta, indices)
        lossy = lossy_compression_meta(self.header["codec"], self.ratio)
        if lossy:
            meta["lossy_compression"] = lossy
        return image_from_facts(
            pixels, img, slice_positions=positions, meta=meta, attachments=attachments,
            source_format=img.get("source_format") or "container", source_path=self.name)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> ContainerFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def compressed_bytes(self) -> int:
        return self.reader.size

    @property
    def ratio(self) -> float:
        return float(self.header.get("original_bytes", 0)) / max(1, self.reader.size)


def open_container(source: str | os.PathLike[str] | bytes) -> ContainerFile:
    """Open container bytes or a container file; close it with ``close()`` or a ``with``."""
    if isinstance(source, bytes | bytearray | memoryview):
        return ContainerFile(io.BytesIO(bytes(source)), "<bytes>")
    path = Path(source)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - owned by the returned object
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        return ContainerFile(stream, str(path))
    except MedcodecError as exc:
        stream.close()
        raise type(exc)(f"{path}: {exc}") from None


def decompress(source: str | os.PathLike[str] | bytes, slices: Iterable[int] | None = None,
               progress: ProgressFn | None = None) -> MedImage:
    """Decode a container (bytes or file) back to a MedImage; ``slices`` picks some only."""
    with open_container(source) as container:
        try:
            return container.image(slices, progress)
        except MedcodecError as exc:
            if container.name != "<bytes>" and not str(exc).startswith(container.name):
                raise type(exc)(f"{container.name}: {exc}") from None
            raise
