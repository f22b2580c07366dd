"""MP4 -> GIF with a per-clip optimal palette, in constant memory.

A good GIF needs the palette of the *whole* clip before the first frame is quantised, which is why
ffmpeg users write `palettegen` and `paletteuse` as two commands. We do the same in-process with two
decode passes over the (already staged) MP4 instead of holding frames in RAM:

  pass 1: decode -> fps -> [scale] -> palettegen -> one 16x16 palette frame (emitted at EOF)
  pass 2: decode -> fps -> [scale] -> paletteuse(input 1 = that palette) -> gif encoder

`paletteuse` keeps the last palette forever (framesync repeatlast), so the palette is pushed once and its
input closed before any main frame. Decoding the MP4 twice costs a little CPU; memory is a few frames
plus two tables bounded by colours, not by length: palettegen's histogram (capped by posterising to
`palette_bits`) and paletteuse's colour cache (see DITHERS). Measured with benchmarks/bench_encoder.py
--gif: 10 s and 10 min clips peak within ~15 MB of each other.
"""
from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path

import av
from av.filter import Graph

from simreel.runtime import log

from simreel.media.errors import NoFramesError
from simreel.media.info import VideoInfo, finished
from simreel.media.probe import open_video

_log = log.get(__name__)

# GIF delays are in centiseconds and browsers clamp delays < 2 cs to 10 cs: above 50 fps a GIF plays
# *slower*, not smoother.
MAX_GIF_FPS = 50
# paletteuse dithering. sierra2_4a (error diffusion, default) hides banding in sky/shading gradients
# but is ~2x slower and its colour-lookup cache grows with the number of distinct dithered colours:
# measured +14 MB (10 s) -> +28 MB (4 min) -> +29 MB (10 min) at 160 px wide, i.e. it saturates and
# does not grow with length. "bayer" (ordered, scale 3) and "none" stay at ~12-14 MB and are faster;
# "none" gives the smallest files but may band on gradients.
DITHERS = {
    "sierra2_4a": "dither=sierra2_4a",
    "bayer": "dither=bayer:bayer_scale=3",
    "none": "dither=none",
}


def _source(g: Graph, frame: av.VideoFrame, time_base: Fraction, name: str):
    """A buffer source that declares the frame's colour tags, so the graph does not renegotiate (and
    warn) on the first frame: PyAV's `add_buffer` has no colorspace/range parameters."""
    return g.add(
        "buffer",
        name=name,
        video_size=f"{frame.width}x{frame.height}",
        pix_fmt=frame.format.name,
        time_base=str(time_base),
        pixel_aspect="1/1",
        colorspace=str(int(frame.colorspace)),
        range=str(int(frame.color_range)),
    )


def _chain(g: Graph, src, fps: int, width: int | None) -> list:
    """fps -> scale/convert to bgra (the only format palettegen/paletteuse take) -> tag as sRGB.

    The conversion is done by our own `scale` node with fixed flags (the auto-inserted one uses
    defaults), and `setparams` re-tags the RGB as sRGB: the MP4's BT.709 transfer tag is nominal,
    the pixels are the renderer's sRGB values, and palettegen warns on anything else.
    """
    size = f"w={width}:h=-2" if width else "w=iw:h=ih"
    return [
        src,
        g.add("fps", f"fps={fps}"),
        g.add("scale", f"{size}:flags=lanczos+accurate_rnd+bitexact"),
        g.add("format", "pix_fmts=bgra"),
        g.add("setparams", "color_trc=iec61966-2-1:color_primaries=bt709"),
    ]


def _posterize(g: Graph, bits: int):
    """Keep the top `bits` of each channel (centred in the dropped range) before palettegen.

    palettegen keeps a histogram entry per *unique* colour and median-cuts them at EOF. Video decoded
    from YUV has close to every RGB value somewhere, so on detailed content an 8-bit histogram grows
    to millions of entries: on noise-like 320x240 frames, 3 s of video took 8.3 s and +90 MB in
    palettegen (6 bits: 1.0 s, same output quality by MAE). At 6 bits the histogram is
    capped at 2^18 entries (bounded memory whatever the clip) and the palette is visually the same,
    because paletteuse still maps the full 8-bit pixels onto it.
    """
    mask = (0xFF << (8 - bits)) & 0xFF
    half = (1 << (8 - bits)) >> 1
    expr = f"bitand(val\\,{mask})+{half}"
    return g.add("lutrgb", f"r={expr}:g={expr}:b={expr}")


def _palette(src: Path, fps: int, width: int | None, bits: int) -> av.VideoFrame:
    inp, vs = open_video(src)
    with inp:
        g = None
        for frame in inp.decode(vs):
            if g is None:
                g = Graph()
                g.threads = 1
                nodes = _chain(g, _source(g, frame, vs.time_base, "main"), fps, width)
                if bits < 8:
                    nodes.append(_posterize(g, bits))
                g.link_nodes(*nodes, g.add("palettegen", "stats_mode=full"), g.add("buffersink"))
                g.configure()
            g.push(frame)
            # libavfilter is pull-driven: a pushed frame just waits in the buffer source until
            # someone asks the sink. palettegen has nothing to give before EOF, but asking makes it
            # consume the frame now; without this all decoded frames pile up (measured +260 MB on
            # a 10-min clip).
            try:
                g.pull()
            except av.error.BlockingIOError:
                pass
        if g is None:
            raise NoFramesError(f"{src} has no decodable frames; cannot make a GIF")
        g.push(None)
        return g.pull()


def _quantize_graph(
    first: av.VideoFrame,
    time_base: Fraction,
    palette: av.VideoFrame,
    fps: int,
    width: int | None,
    dither: str,
) -> Graph:
    """Pass-2 graph, palette already pushed and its input closed; push main frames with `at=0`."""
    g = Graph()
    g.threads = 1
    # Buffer sources are indexed in creation order: 0 = main, 1 = palette.
    nodes = _chain(g, _source(g, first, time_base, "main"), fps, width)
    pal_in = _source(g, palette, Fraction(1, fps), "palette")
    # diff_mode=rectangle: only the changed rectangle is re-quantised and stored, so a static scene
    # stays byte-identical between frames (small GIFs, no dither "crawl" in the background).
    use = g.add("paletteuse", f"{DITHERS[dither]}:diff_mode=rectangle")
    sink = g.add("buffersink")
    g.link_nodes(*nodes)
    nodes[-1].link_to(use, 0, 0)
    pal_in.link_to(use, 0, 1)
    use.link_to(sink)
    g.configure()
    g.push(palette, at=1)
    g.push(None, at=1)
    return g


class _GifOut:
    """GIF muxer whose stream is created from the first quantised frame (its size is only known
    once scale has run)."""

    def __init__(self, path: Path, fps: int) -> None:
        self.fps, self.tb = fps, Fraction(1, fps)
        self.frames = self.width = self.height = 0
        self._stream = None
        self._c = av.open(str(path), "w", format="gif", options={"fflags": "+bitexact"})

    def add(self, frame: av.VideoFrame) -> None:
        if self._stream is None:
            st = self._c.add_stream("gif", rate=self.fps)
            st.width, st.height, st.pix_fmt = frame.width, frame.height, "pal8"
            st.codec_context.time_base = self.tb
            st.codec_context.thread_count = 1
            self._stream, self.width, self.height = st, frame.width, frame.height
        # Re-stamp on the GIF's own clock: frame n of the GIF is at n/fps.
        frame.pts, frame.time_base, frame.duration = self.frames, self.tb, 1
        self._c.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        self._c.mux(self._stream.encode(None))
        self._c.close()

    def abort(self) -> None:
        try:
            self._c.close()
        except Exception:  # no stream was ever added; the file is dropped anyway
            pass


def _drain(g: Graph, out: _GifOut) -> None:
    while True:
        try:
            frame = g.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return
        out.add(frame)


def mp4_to_gif(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    fps: int = 15,
    width: int | None = None,
    palette_bits: int = 6,
    dither: str = "sierra2_4a",
) -> VideoInfo:
    """Convert a video file to a looping GIF at `fps` (resampled by time) and optional `width`.

    Frame count is duration x fps (+-1, ffmpeg's fps filter rounds the last frame). Output bytes are
    deterministic for a given input.
    """
    if not isinstance(fps, int) or not 1 <= fps <= MAX_GIF_FPS:
        raise ValueError(f"gif fps must be an int in [1, {MAX_GIF_FPS}], got {fps!r}")
    if width is not None and (not isinstance(width, int) or width < 2):
        raise ValueError(f"gif width must be an int >= 2 or None, got {width!r}")
    if dither not in DITHERS:
        raise ValueError(f"dither must be one of {tuple(DITHERS)}, got {dither!r}")
    if palette_bits not in range(4, 9):
        raise ValueError(f"palette_bits must be in 4..8, got {palette_bits!r}")
    src, dst = Path(src), Path(dst)
    t0 = time.perf_counter()
    palette = _palette(src, fps, width, palette_bits)
    palette.pts = 0

    tmp = dst.with_name(dst.name + ".partial")
    dst.parent.mkdir(parents=True, exist_ok=True)
    inp, vs = open_video(src)
    out = _GifOut(tmp, fps)
    try:
        with inp:
            g = None
            for frame in inp.decode(vs):
                if g is None:
                    g = _quantize_graph(frame, vs.time_base, palette, fps, width, dither)
                g.push(frame, at=0)
                _drain(g, out)
            if g is not None:
                g.push(None, at=0)
                _drain(g, out)
        if out.frames == 0:
            raise NoFramesError(f"{src} produced no GIF frames")
        out.close()
    except BaseException:
        out.abort()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)
    return finished(dst, kind="gif", frames=out.frames, fps=fps, width=out.width, height=out.height, codec="gif",
                    encode_s=time.perf_counter() - t0, src=str(src))
