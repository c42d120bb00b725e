"""The ``.mdcx`` container: a small, checksummed, random-access file of independently coded slices.

Layout (all integers little-endian; full spec in docs/FORMAT.md)::

    +--------+-------+-------+---------+----------+-------------+-------------+----------+--------+
    | magic  | major | minor | H (u32) | CRC32(H) | header JSON | chunk table | CRC32(T) | chunks |
    | 8 B    | u16   | u16   | 4 B     | 4 B      | H bytes     | N x 20 B    | 4 B      | ...    |
    +--------+-------+-------+---------+----------+-------------+-------------+----------+--------+

Each chunk table entry is ``offset u64, length u64, crc32 u32`` (offset from the file start).
The header is plain JSON (never pickle). Reading slice k touches the preamble, the header,
the table and chunk k only. Every length is checked against hard limits and the real file size
before anything is allocated, so a forged or truncated file fails fast with a clear message.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from medcodec.container.schema import MAX_ATTACHMENT_BYTES, HeaderError
from medcodec.errors import CorruptStreamError

MAGIC = b"\x89MDCX\r\n\x1a"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
EXTENSION = ".mdcx"

_PREAMBLE = struct.Struct("<8sHHII")  # magic, major, minor, header length, header crc
_ENTRY = struct.Struct("<QQI")  # offset, length, crc32
_CRC = struct.Struct("<I")

MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_CHUNKS = 1 << 20


@dataclass(frozen=True)
class ChunkEntry:
    offset: int
    length: int
    crc32: int


def crc32(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def attachments_size(attachments: Mapping[str, bytes]) -> int:
    """Inflated size of the attachment chunk :func:`pack_attachments` makes."""
    return sum(6 + len(name.encode("utf-8")) + len(data) for name, data in attachments.items())


def pack_attachments(attachments: Mapping[str, bytes]) -> bytes:
    """Named binary blobs in one zlib stream: ``(u16 name length, name, u32 length, data)*``."""
    out = io.BytesIO()
    for name, data in attachments.items():
        encoded = name.encode("utf-8")
        out.write(struct.pack("<H", len(encoded)))
        out.write(encoded)
        out.write(struct.pack("<I", len(data)))
        out.write(data)
    return zlib.compress(out.getvalue(), 9)


def unpack_attachments(blob: bytes, names: list[str] | None = None,
                       limit: int = MAX_ATTACHMENT_BYTES) -> dict[str, bytes]:
    """The blobs of an attachment chunk; inflating stops as soon as ``limit`` bytes are passed.

    ``names`` (the header's ``attachments.names``): the records must be exactly these, in order.
    """
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob, limit + 1)
    except zlib.error as exc:
        raise CorruptStreamError(f"attachment chunk does not inflate: {exc}") from None
    if len(raw) > limit or inflater.unconsumed_tail:
        raise CorruptStreamError(
            f"attachment chunk inflates to more than {limit} bytes, more than this file's side "
            "data can plausibly be")
    if not inflater.eof or inflater.unused_data:
        raise CorruptStreamError("attachment chunk is truncated or has trailing bytes")
    out: dict[str, bytes] = {}
    pos = 0
    view = memoryview(raw)
    try:
        while pos < len(raw):
            if names is not None and len(out) >= len(names):
                raise CorruptStreamError("attachment chunk holds more records than the header "
                                         "names")
            (name_len,) = struct.unpack_from("<H", raw, pos)
            pos += 2
            name = bytes(view[pos : pos + name_len]).decode("utf-8")
            pos += name_len
            (data_len,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + data_len > len(raw):
                raise CorruptStreamError("attachment chunk is truncated")
            if name in out or (names is not None and name != names[len(out)]):
                raise CorruptStreamError(
                    f"attachment record {len(out)} is named {name[:60]!r}, which the header "
                    "does not list there")
            out[name] = bytes(view[pos : pos + data_len])
            pos += data_len
    except (struct.error, UnicodeDecodeError):
        raise CorruptStreamError("attachment chunk is malformed") from None
    if names is not None and len(out) != len(names):
        raise CorruptStreamError(f"attachment chunk holds {len(out)} records, the header names "
                                 f"{len(names)}")
    return out


def pack(header: Mapping[str, Any], chunks: list[bytes]) -> bytes:
    """Serialise a header and its chunks into one container byte string."""
    header = dict(header)
    header["n_chunks"] = len(chunks)
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError("container header is too large")
    data_start = _PREAMBLE.size + len(header_bytes) + _ENTRY.size * len(chunks) + _CRC.size
    table = io.BytesIO()
    offset = data_start
    for chunk in chunks:
        table.write(_ENTRY.pack(offset, len(chunk), crc32(chunk)))
        offset += len(chunk)
    table_bytes = table.getvalue()
    preamble = _PREAMBLE.pack(
        MAGIC, FORMAT_MAJOR, FORMAT_MINOR, len(header_bytes), crc32(header_bytes)
    )
    return b"".join(
        [preamble, header_bytes, table_bytes, _CRC.pack(crc32(table_bytes)), *chunks]
    )


def _stream_size(stream: BinaryIO) -> int:
    here = stream.tell()
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(here)
    return size


class ContainerReader:
    """Validated, random-access view of a container held in a seekable binary stream.

    It owns the stream: ``close()`` (or a ``with`` block) closes it.
    """

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __init__(self, stream: BinaryIO, name: str = "<stream>") -> None:
        self.name = name
        self._stream = stream
        self.size = _stream_size(stream)
        stream.seek(0)
        preamble = stream.read(_PREAMBLE.size)
        if len(preamble) < _PREAMBLE.size:
            if MAGIC.startswith(preamble[: len(MAGIC)]) and preamble:
                raise CorruptStreamError("file is truncated inside the container preamble")
            raise CorruptStreamError("not a medcodec container (file too short)")
        magic, major, minor, header_len, header_crc = _PREAMBLE.unpack(preamble)
        if magic != MAGIC:
            raise CorruptStreamError("not a medcodec container (wrong magic bytes)")
        if major != FORMAT_MAJOR:
            raise CorruptStreamError(
                f"container format version {major}.{minor} is not supported "
                f"(this medcodec reads {FORMAT_MAJOR}.x)"
            )
        self.version = (major, minor)
        if header_len == 0 or header_len > MAX_HEADER_BYTES:
            raise CorruptStreamError(f"header length {header_len} is out of range")
        if _PREAMBLE.size + header_len > self.size:
            raise CorruptStreamError("file is truncated inside the header")
        header_bytes = stream.read(header_len)
        if crc32(header_bytes) != header_crc:
            raise CorruptStreamError("header checksum mismatch (the file is damaged)")
        try:
            header = json.loads(header_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CorruptStreamError("header is not valid JSON") from None
        except RecursionError:
            raise HeaderError("header", "is nested too deeply to be a medcodec header") from None
        except ValueError as exc:  # e.g. an integer past Python's int-string digit limit
            problem = str(exc).split(":")[0]
            raise HeaderError("header", f"holds a value that cannot be read ({problem})") from None
        if not isinstance(header, dict):
            raise CorruptStreamError("header is not a JSON object")
        self.header: dict[str, Any] = header
        n_chunks = header.get("n_chunks")
        if not isinstance(n_chunks, int) or not 0 <= n_chunks <= MAX_CHUNKS:
            raise CorruptStreamError(f"chunk count {n_chunks!r} is out of range")
        table_len = _ENTRY.size * n_chunks
        table_start = _PREAMBLE.size + header_len
        data_start = table_start + table_len + _CRC.size
        if data_start > self.size:
            raise CorruptStreamError("file is truncated inside the chunk table")
        table_bytes = stream.read(table_len)
        (table_crc,) = _CRC.unpack(stream.read(_CRC.size))
        if crc32(table_bytes) != table_crc:
            raise CorruptStreamError("chunk table checksum mismatch (the file is damaged)")
        entries = []
        for i in range(n_chunks):
            entry = ChunkEntry(*_ENTRY.unpack_from(table_bytes, i * _ENTRY.size))
            if entry.offset < data_start or entry.offset + entry.length > self.size:
                raise CorruptStreamError(
                    f"chunk {i} lies outside the file (the file is truncated or damaged)"
                )
            entries.append(entry)
        self.entries: list[ChunkEntry] = entries

    def read_chunk(self, index: int) -> bytes:
        if not 0 <= index < len(self.entries):
            raise CorruptStreamError(f"chunk {index} does not exist")
        entry = self.entries[index]
        self._stream.seek(entry.offset)
        data = self._stream.read(entry.length)
        if len(data) != entry.length:
            raise CorruptStreamError(f"chunk {index} is truncated")
        if crc32(data) != entry.crc32:
            raise CorruptStreamError(f"chunk {index} checksum mismatch (the file is damaged)")
        return data


def open_bytes(data: bytes, name: str = "<bytes>") -> ContainerReader:
    return ContainerReader(io.BytesIO(data), name)


def looks_like_container(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def select_slice_attachments(attachments: Mapping[str, bytes], meta: dict[str, Any],
                             indices: list[int]) -> dict[str, bytes]:
    """The side data of some slices only: per-slice DICOM headers (``dicom/k``) of the chosen
    slices, renumbered from 0, and their file names in ``meta`` (changed in place)."""
    if meta.get("dicom_layout") != "files":
        return dict(attachments)
    out = {k: v for k, v in attachments.items() if not k.startswith("dicom/")}
    for new, old in enumerate(indices):
        if f"dicom/{old}" in attachments:
            out[f"dicom/{new}"] = attachments[f"dicom/{old}"]
    names = meta.get("dicom_filenames") or []
    if len(names) > max(indices, default=-1):
        meta["dicom_filenames"] = [names[i] for i in indices]
    return out
