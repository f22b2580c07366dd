"""Lossless compression of frames on the wire (`FrameBatch.compression`).

Why zstd at level 1, one zstd frame per video frame (measured on 60 rendered 640×480 frames of each
scene, benchmarks/RESULTS.md "Frames on the wire"): rendered scenes have large flat areas, and zstd -1
makes them 9–13× smaller (Gymnasium's half_cheetah.xml 12.0×, humanoid.xml 9.4×, builtin cartpole
12.6×, apartment 6.5×) at about 1 ms of CPU per frame each way. lz4 is twice as fast but 20–40 %
bigger; zlib is as small but 3× slower; blosc2's byte shuffle hurts interleaved RGB. A frame per zstd
frame (rather than one per batch) lets the packer fill a message by compressed size and split one
frame across messages; a window over the previous frame gained nothing at level 1.

The zstd frames carry their content size and a checksum, so a damaged payload is an error here, never
a wrong pixel in a video. Readers accept any valid zstd framing of the batch (one frame per video
frame, or one for the whole batch), bounded by the size the batch header announces, so a hostile
payload cannot inflate past it.

The codec is the standard library's `compression.zstd` (Python ≥ 3.14) or its backport.
"""
from __future__ import annotations

from typing import Literal

try:  # Python >= 3.14
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the interpreter
    from backports import zstd  # type: ignore[no-redef]

Compression = Literal["none", "zstd"]
COMPRESSIONS: tuple[str, ...] = ("none", "zstd")
DEFAULT: Compression = "zstd"
LEVEL = 1


class CorruptFrames(ValueError):
    """A compressed payload that does not decompress to the frames its header announces."""


class FrameCompressor:
    """Compresses one frame at a time into one zstd frame. Keeps its context between frames (cheaper
    than a new one per call); not thread-safe, so each packer has its own."""

    def __init__(self, level: int = LEVEL) -> None:
        self._c = zstd.ZstdCompressor(options={
            zstd.CompressionParameter.compression_level: level,
            zstd.CompressionParameter.checksum_flag: 1,
        })

    def compress(self, pixels: bytes | memoryview) -> bytes:
        return self._c.compress(pixels, zstd.ZstdCompressor.FLUSH_FRAME)


def decompress_frames(data: bytes | memoryview, frame_bytes: int, count: int) -> list[bytes | memoryview]:
    """The `count` frames of `frame_bytes` that `data` (one or more zstd frames) holds, one buffer each,
    or CorruptFrames saying why. With simreel's framing (a zstd frame per video frame) each buffer is
    what zstd returned: no copy to join them, which costs as much as decompressing on this hardware."""
    expected = frame_bytes * count
    view = memoryview(data)
    out: list[bytes] = []
    got = 0
    pos = 0
    try:
        while pos < len(view):
            size = zstd.get_frame_size(view[pos:])
            d = zstd.ZstdDecompressor()
            # One byte of room beyond what is announced: a frame that needs it is too big.
            chunk = d.decompress(view[pos:pos + size], max_length=expected - got + 1)
            if not d.eof:
                raise CorruptFrames(f"zstd frame at byte {pos} holds more than the {expected} bytes announced"
                                    if got + len(chunk) > expected else f"zstd frame at byte {pos} is truncated")
            out.append(chunk)
            got += len(chunk)
            pos += size
    except zstd.ZstdError as e:
        raise CorruptFrames(f"zstd payload damaged at byte {pos} of {len(view)}: {e}") from None
    if got != expected:
        raise CorruptFrames(f"zstd payload holds {got} bytes, the header announces {expected}")
    if len(out) == count and all(len(c) == frame_bytes for c in out):
        return out  # type: ignore[return-value]
    whole = memoryview(b"".join(out))  # another producer's framing: cut the stream into frames
    return [whole[i * frame_bytes:(i + 1) * frame_bytes] for i in range(count)]


def decompress(data: bytes | memoryview, expected: int) -> bytes:
    """The `expected` bytes that `data` holds, as one buffer (a split frame, or a whole batch)."""
    parts = decompress_frames(data, expected, 1) if expected else decompress_frames(data, 1, 0)
    return bytes(parts[0]) if parts else b""
