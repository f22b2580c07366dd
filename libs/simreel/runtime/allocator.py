"""Keep freed frame-sized buffers for reuse instead of handing them back to the kernel.

Why: a process that moves video frames allocates and frees buffers of a frame's size all the time
(a decompressed 640×480 frame is 921,600 bytes, its YUV copy 460,800, a FRAMES message up to 1 MiB).
glibc's defaults return such memory to the kernel as soon as it is free: buffers above 128 kB are
mmap'd and unmapped one by one, a per-thread arena whose heap becomes empty is unmapped, and the top
of a heap is trimmed beyond twice the last large free. Each new buffer is then fresh pages: one page
fault per 4 kB and the kernel zeroing every page, only for the frame to overwrite it. Measured in
the encoder on 640×480 frames (benchmarks/RESULTS.md, "Encoder reading from JetStream"): about 190
page faults per frame, and zstd's decompression costing 0.9 ms per frame instead of 0.3 ms.

With one arena, no mmap below 32 MiB and trimming only above 64 MiB free, freed frames are reused
from the heap. Memory stays bounded by the process's own peak (what was freed is what it used); it
is just not returned between frames. Only glibc is tuned: elsewhere this does nothing.
"""
from __future__ import annotations

import ctypes
import sys

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit hosts
TRIM_THRESHOLD = 64 * 1024 * 1024

_done: bool | None = None


def reuse_freed_buffers() -> bool:
    """Tune glibc's malloc for frame-sized buffers; True when it applied. Call it before the process
    starts threads (threads that already have their own arena keep it). Idempotent."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl's mallopt ignores these)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = all(mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    return _done


def prefault(nbytes: int) -> int:
    """Touch `nbytes` of heap once and free them, so a new process's first frames land on pages that
    are already mapped (the first batch of a fresh encoder decompressed at 0.8 ms per frame instead
    of 0.3: its pages were new). Only after `reuse_freed_buffers()` applied - otherwise the memory
    goes straight back to the kernel; capped below the mmap threshold. Returns the bytes touched."""
    if not _done:
        return 0
    n = max(0, min(nbytes, MMAP_THRESHOLD - (1 << 20)))
    if n:
        block = b"\x01" * n  # malloc'd and written: every page faulted in now, not mid-job
        del block
    return n

