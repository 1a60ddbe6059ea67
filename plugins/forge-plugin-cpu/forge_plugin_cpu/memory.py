"""Give back the pages of memory-mapped model files once a weight has been converted.

After conversion the backend never reads the file bytes again, but the pages it touched stay
mapped and count towards the process RSS (the Gemma 3 270M file is 253 MB). ``MADV_DONTNEED`` on a
read-only *shared file* mapping just unmaps them; if anyone reads the array again the kernel
pages the same bytes back in from the file, so this never changes what the array contains.
It is only applied to ``numpy.memmap`` views opened with mode ``"r"``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

import numpy as np

_MADV_DONTNEED = 4
_libc = None


def _madvise():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _libc.madvise


def _readonly_memmap(array: np.ndarray) -> bool:
    base = array
    while base is not None:
        if isinstance(base, np.memmap):
            return getattr(base, "mode", None) == "r"
        base = getattr(base, "base", None)
    return False


def release_file_pages(array: object) -> bool:
    """Drop the resident pages behind ``array`` if it is a read-only file memory map.

    Returns True when pages were released. Never raises (memory accounting is best effort).
    """
    if not sys.platform.startswith("linux") or not isinstance(array, np.ndarray):
        return False
    if array.nbytes < mmap.PAGESIZE or not _readonly_memmap(array):
        return False
    try:
        start = array.__array_interface__["data"][0]
        page = mmap.PAGESIZE
        begin = start - start % page
        end = start + array.nbytes
        return _madvise()(begin, end - begin, _MADV_DONTNEED) == 0
    except (OSError, AttributeError, KeyError):
        return False


def trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``).

    Converting a weight frees tens of MB of float32 temporaries; glibc keeps such chunks in its
    arenas once its dynamic mmap threshold has grown, which left ~200 MB of dead heap in RSS
    after loading Gemma 3 270M. No-op where glibc is absent.
    """
    global _trim
    if _trim is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _trim = libc.malloc_trim
            _trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim = None
