"""The medcodec container file format (``.mdcx``)."""

from medcodec.container.format import (
    EXTENSION,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    ContainerReader,
    looks_like_container,
    open_bytes,
    pack,
    pack_attachments,
    unpack_attachments,
)

__all__ = [
    "EXTENSION",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAGIC",
    "ContainerReader",
    "looks_like_container",
    "open_bytes",
    "pack",
    "pack_attachments",
    "unpack_attachments",
]
