"""Numba compilation for the raster-scan coder, cached where the install allows.

Numba caches compiled code next to the module (or in the user's cache folder). A read-only
install with no writable home makes ``cache=True`` fail at import with "no locator
available"; then the functions are compiled without a cache (a few seconds per process)
instead of medcodec failing to import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def compiled(**options: Any) -> Callable[[F], F]:
    """``numba.njit(cache=True, nogil=True, **options)``, without the cache if none can be
    written."""
    from numba import njit

    def decorate(function: F) -> F:
        try:
            return njit(cache=True, nogil=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, nogil=True, **options)(function)

    return decorate
