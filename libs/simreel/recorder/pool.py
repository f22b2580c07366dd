"""Frame buffers that go round between the producer and the recorder thread.

Why: a new ~900 kB `bytes` per 640x480 frame, freed in the recorder thread once compressed, makes
glibc raise its mmap threshold (it does after the first large free), after which freed frames stay in
the heap: the training process grew by 6-10 MB more than the frames in flight (measured with
HalfCheetah-v5 640x480; fixing the threshold by hand gave the same saving). Reused buffers cost
only what is in flight, and nothing of the producer's allocator settings is touched.
"""
from __future__ import annotations

import threading

import numpy as np


class FramePool:
    """Buffers of one frame size; `take` in the producer's thread, `give` back in the recorder's."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._free: list[bytearray] = []
        self._size = 0
        self._lock = threading.Lock()

    def copy(self, frame: np.ndarray, *planes: np.ndarray) -> bytearray:
        """`frame` (HxWx3 uint8), then any further `planes` (depth, segmentation: simreel.contract.streams),
        copied back to back into a buffer of the pool (the env may reuse its own arrays)."""
        if frame.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frame.dtype}")
        buf = self._take(frame.nbytes + sum(p.nbytes for p in planes))
        pos = 0
        for a in (frame, *planes):
            np.copyto(np.frombuffer(buf, a.dtype, a.size, pos).reshape(a.shape), a)
            pos += a.nbytes
        return buf

    def give(self, buf: bytearray) -> None:
        """Hand a buffer back once nothing reads it any more."""
        with self._lock:
            if len(buf) == self._size and len(self._free) < self.keep:
                self._free.append(buf)

    def _take(self, nbytes: int) -> bytearray:
        with self._lock:
            if nbytes != self._size:  # a new frame size: the old buffers are of no use
                self._free.clear()
                self._size = nbytes
            if self._free:
                return self._free.pop()
        return bytearray(nbytes)
