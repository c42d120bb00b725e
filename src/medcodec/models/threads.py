"""A small shared thread pool for the learned models' vectorised work.

NumPy releases the GIL inside its kernels, so independent row blocks of an integer network (or
of any exact, order-free computation) run in parallel on the machine's cores. Results do not
depend on the split: every block is computed exactly, so decoding stays bit-exact whatever
the thread count. While the pool works, the BLAS library runs single-threaded (threadpoolctl),
so that it does not oversubscribe the cores. The default is 2 threads (fewer on a one-core
machine), what the speed targets are measured with; ``MEDCODEC_THREADS`` sets another count.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from medcodec.errors import SettingError

T = TypeVar("T")
R = TypeVar("R")
_PREFIX = "medcodec-model"


#: More threads than this is a typo, not a machine.
MAX_THREADS = 1024


def threads_from_environment() -> int | None:
    """``MEDCODEC_THREADS`` as a thread count (None when unset); a clear error when it is not
    a whole number from 1 to MAX_THREADS, naming the variable."""
    value = os.environ.get("MEDCODEC_THREADS")
    if value is None or not value.strip():
        return None
    try:
        count = int(value.strip())
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_THREADS:
        raise SettingError(f"the environment variable MEDCODEC_THREADS = {value[:40]!r} is "
                           f"not a thread count (a whole number from 1 to {MAX_THREADS}); "
                           "unset it for the default")
    return count


def thread_count() -> int:
    """Threads the models use: ``MEDCODEC_THREADS`` if set, else min(2, usable cores)."""
    count = threads_from_environment()
    if count is not None:
        return count
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


@functools.lru_cache(maxsize=1)
def _blas_controller() -> object:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=_PREFIX)


def parallel_map(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[function(x) for x in items]``, spread over :func:`thread_count` threads.

    The BLAS library runs single-threaded meanwhile, even when one thread does all the work:
    OpenBLAS's own threads keep spinning after a call and would steal the cores from ours.
    """
    if threading.current_thread().name.startswith(_PREFIX):
        # nested calls run inline: a pool thread waiting on its own pool could deadlock
        return [function(item) for item in items]
    workers = min(thread_count(), len(items))
    with _blas_controller().limit(limits=1, user_api="blas"):
        if workers <= 1:
            return [function(item) for item in items]
        return list(_pool(workers).map(function, items))
