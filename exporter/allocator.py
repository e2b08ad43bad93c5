"""What the C allocator keeps: big buffers go back to the OS when freed, and freed heap is trimmed.

Contract:
- `tune()` makes glibc's malloc serve every allocation of `MMAP_THRESHOLD` bytes or more with
  its own mapping, returned to the OS when freed, and caps malloc's arenas at `ARENA_MAX`.
  It returns True when applied, False where the C library is not glibc (musl, macOS): then
  nothing changes and nothing fails.
- `trim()` returns the free memory at the top and inside glibc's heaps to the OS
  (`malloc_trim(0)`); False where unavailable. It frees nothing the process still uses.
- Call both from the serving process only: they change process-wide allocator behaviour.

Why (figures in docs/benchmarks.md): glibc raises its mmap threshold each time a mapped block is
freed (up to 32 MiB), so after the first freed family text, transport buffer or gzip body, every
later buffer of that size is carved from the heap, where one live small object keeps the pages
around it resident: RSS then grows with every burst of scrapes and never comes back. A fixed
threshold also stops that adjustment. Worker threads (gzip) would each get an arena of their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from typing import Final

#: Allocations at least this big are mapped on their own. 256 KiB is above everything per VMI
#: and per event (records, a decoded page slice's strings) and below the buffers that come and go
#: per scrape (write slices, compressed bodies, family texts).
MMAP_THRESHOLD: Final = 256 * 1024
#: malloc arenas: the event loop's and one for the few worker threads (gzip, file reads).
ARENA_MAX: Final = 2

# mallopt(3) parameters (glibc malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8


def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC: Final = _glibc()


def tune() -> bool:
    """Fixed mmap threshold and arena cap (see the module contract); False when not glibc."""
    if _LIBC is None:
        return False
    applied = _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    # Setting the mmap threshold fixes the trim threshold at its default (128 KiB) too: freed
    # memory at the top of the heap above that goes back to the OS at once.
    applied &= _LIBC.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
    applied &= _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX)
    return bool(applied)


def trim() -> bool:
    """Return freed heap memory to the OS (glibc `malloc_trim(0)`); False when not glibc."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True
