"""exporter.allocator against the real glibc of this machine, each case in a fresh interpreter
(the allocator settings are process-wide)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.cluster import REPO

#: Prints how many bytes glibc maps on their own (mallinfo2 hblkhd) grow when a 1 MiB buffer is
#: allocated after a 4 MiB one was freed; `tune()` runs first when argv[1] is "tuned".
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from exporter import allocator

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "tuned":
        assert allocator.tune()
    libc.free(libc.malloc(4 << 20))  # glibc would now raise its threshold to 4 MiB
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(1 << 20)
    print(libc.mallinfo2().hblkhd - before)
    libc.free(block)
    print(allocator.trim())
    """
)


def mapped_growth(mode: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, check=True
    )
    growth, trimmed = done.stdout.split()
    return int(growth), trimmed


def test_untuned_glibc_carves_a_buffer_from_the_heap_after_a_bigger_one_was_freed() -> None:
    # The behaviour `tune` exists to stop (the control case: proves the probe can tell).
    assert mapped_growth("untuned")[0] == 0


def test_tuned_glibc_maps_every_large_buffer_on_its_own_so_freeing_returns_it() -> None:
    growth, trimmed = mapped_growth("tuned")
    assert growth >= 1 << 20
    assert trimmed == "True"
