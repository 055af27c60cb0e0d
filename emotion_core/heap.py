"""The process heap under glibc: keep freed memory for a training loop, or hand it back to the OS once a
large load is done. Elsewhere (macOS, musl) both are no-ops."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return None


@functools.cache  # once per process
def keep_freed_memory_in_process() -> bool:
    """Let glibc reuse freed batch tensors instead of returning them to the OS.

    glibc serves large allocations with a fresh mmap and unmaps them on free, so every training batch of
    encoder frames was page-faulted in anew, a large share of a fold fit. Raising the mmap and trim
    thresholds keeps those pages on the heap (same numbers); `release_freed_heap` still hands them back.
    Returns whether it applied (glibc only)."""
    libc = _libc()
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    try:
        return bool(libc and libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 2 << 30))
    except AttributeError:  # a libc without mallopt
        return False


def release_freed_heap() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim). Loading a corpus frees one full-rate copy
    of each clip after keeping a smaller one, and the holes would otherwise stay in the process' RSS."""
    with contextlib.suppress(AttributeError, TypeError):
        if libc := _libc():
            libc.malloc_trim(0)
