"""The medcodec container file format (``.mdcx``)."""

from medcodec.container.format import (
    EXTENSION,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    ContainerReader,
    attachments_size,
    looks_like_container,
    open_bytes,
    pack,
    pack_attachments,
    select_slice_attachments,
    unpack_attachments,
)
from medcodec.container.schema import HeaderError, validate_header, validate_image

__all__ = [
    "EXTENSION",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAGIC",
    "ContainerReader",
    "HeaderError",
    "attachments_size",
    "looks_like_container",
    "open_bytes",
    "pack",
    "pack_attachments",
    "select_slice_attachments",
    "unpack_attachments",
    "validate_header",
    "validate_image",
]
