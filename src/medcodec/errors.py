"""Exceptions raised by medcodec.

Every error a user can cause (bad file, bad option, corrupt stream) is a :class:`MedcodecError`,
so the CLI can turn it into one line and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations


class MedcodecError(Exception):
    """Base class of every error medcodec raises on purpose."""


class InputError(MedcodecError):
    """An input file cannot be read or holds something medcodec does not handle."""


class UnsupportedError(InputError):
    """The input is valid but outside what medcodec supports (colour, float pixels, ...)."""


class CorruptStreamError(MedcodecError):
    """A compressed stream is truncated, damaged or not a medcodec stream at all."""


class CodecUnavailableError(MedcodecError):
    """The requested codec's library is not installed or cannot carry this data."""


class OutputError(MedcodecError):
    """The output cannot be written (it exists and --force was not given, bad folder, ...)."""


class SettingError(MedcodecError):
    """An environment variable or setting holds a value medcodec cannot use."""
