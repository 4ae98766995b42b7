"""Giving the heap's free pages back to the system.

An idle connection lets its ciphers' OpenSSL objects go (Connection, idle_release_after),
but glibc keeps what is freed between live allocations: the process's RSS would not show
it. ``malloc_trim(0)`` returns every whole free page of the heap (madvise), which is what
makes idle release visible; a server calls it now and then after batches of releases.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def trim_heap() -> bool:
    """Return the heap's free pages to the system where the C library can (glibc's
    malloc_trim); False where it cannot. Costs about 1 ms per 100 MB of heap."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
