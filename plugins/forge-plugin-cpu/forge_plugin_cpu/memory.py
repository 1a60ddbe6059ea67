"""Give back the pages of memory-mapped model files once a weight has been converted.

After conversion the backend never reads the file bytes again, but the pages it touched stay
mapped and count towards the process RSS (the Gemma 3 270M file is 253 MB). ``MADV_DONTNEED`` on a
read-only *shared file* mapping just unmaps them; if anyone reads the array again the kernel
pages the same bytes back in from the file, so this never changes what the array contains.
It is only applied to ``numpy.memmap`` views opened with mode ``"r"``.

The page cache maps a file in large folios (1 MB on this machine's ext4, kernel 6.18): touching
one byte of a 2.5 KB norm maps the whole folio, neighbours included, back into RSS. Releasing
only a tensor's own bytes therefore left ~40 MB of re-mapped neighbour pages resident after
loading Gemma 3 270M; a release covers the whole :data:`FOLIO_BYTES`-aligned window around the
tensor instead (neighbours not yet converted are simply mapped again when read).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

import numpy as np

_MADV_DONTNEED = 4
FOLIO_BYTES = 2 << 20
"""Alignment a release is widened to (the largest page-cache folio: one PMD)."""
_libc = None


def _madvise():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _libc.madvise


def _readonly_mapping(array: np.ndarray) -> tuple[int, int] | None:
    """``(address, bytes)`` of the read-only ``numpy.memmap`` that owns ``array``'s memory (the
    innermost one, whose base is the ``mmap`` itself), or None for any other memory."""
    root, base = None, array
    while base is not None and not isinstance(base, mmap.mmap):
        if isinstance(base, np.memmap):
            root = base
        base = getattr(base, "base", None)
    if root is None or getattr(root, "mode", None) != "r":
        return None
    return root.__array_interface__["data"][0], root.nbytes


def release_file_pages(array: object) -> bool:
    """Drop the resident pages behind ``array`` if it is a read-only file memory map.

    Returns True when pages were released. Never raises (memory accounting is best effort).
    """
    if not sys.platform.startswith("linux") or not isinstance(array, np.ndarray):
        return False
    if array.nbytes < mmap.PAGESIZE:
        return False
    mapping = _readonly_mapping(array)
    if mapping is None:
        return False
    try:
        origin, size = mapping
        start = array.__array_interface__["data"][0] - origin  # offsets in the mapping
        begin = max(0, start - start % FOLIO_BYTES)
        end = min(size, -(-(start + array.nbytes) // FOLIO_BYTES) * FOLIO_BYTES)
        first = origin + begin
        first -= first % mmap.PAGESIZE  # a memmap at a page offset starts mid-page
        return _madvise()(first, origin + end - first, _MADV_DONTNEED) == 0
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
