"""Freed memory handed back to the system. glibc keeps the heap a long stage freed (the big arrays
of indexes, once its dynamic mmap threshold has grown past them, and the arenas of worker
threads) for later allocations; the next stage then grows on top of it, and a run's peak with
the size of its indexes. `malloc_trim` returns those free pages."""

from __future__ import annotations

import ctypes


def give_back() -> bool:
    """Return the free pages of every malloc arena to the system; False where the C library has no
    `malloc_trim` (not glibc), where there is nothing to do."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True
