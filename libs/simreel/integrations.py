"""Ready `on_video` callbacks for the loggers training code already uses: Weights & Biases and
TensorBoard. Every simreel recorder (`simreel.gym.RecordVideo`, `simreel.gym.vector.RecordVideo`,
`simreel.sb3.VecVideoRecorder`) calls `on_video(info)` in its own thread as each video is stored, so
logging a video never happens inside `step()`.

    import wandb
    from simreel.gym import RecordVideo
    from simreel.integrations import wandb_logger

    run = wandb.init(project="cheetah")
    env = RecordVideo(env, "videos", on_video=wandb_logger(run))

`info` is one entry of the wrapper's `videos` (`name`, `path`, `url`, `frames`, `fps`, `episode`, …).
Neither library is a dependency of simreel; each helper imports its own when called.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

VideoInfo = dict[str, Any]
OnVideo = Callable[[VideoInfo], None]


def every(*callbacks: OnVideo) -> OnVideo:
    """One on_video that calls several (W&B and TensorBoard, your own)."""

    def on_video(info: VideoInfo) -> None:
        for cb in callbacks:
            cb(info)

    return on_video


def wandb_logger(run: Any = None, *, key: str = "videos/{name}") -> OnVideo:
    """Log each stored MP4 to a W&B run (default: `wandb.run`) as `wandb.Video`, under `key`
    (`{name}` is the video's name). `commit=False`: it joins the run's current step instead of
    advancing the step counter from another thread."""
    import wandb

    lock = threading.Lock()

    def on_video(info: VideoInfo) -> None:
        if info.get("status") != "completed" or not info.get("path"):
            return
        target = run or wandb.run
        if target is None:
            raise RuntimeError("wandb_logger: no W&B run (call wandb.init() or pass run=)")
        with lock:
            target.log({key.format(name=info["name"]): wandb.Video(info["path"], fps=info.get("fps") or 30,
                                                                    format="mp4")}, commit=False)

    return on_video


def tensorboard_logger(writer: Any, *, tag: str = "videos/{name}", fps: int = 15, max_width: int = 320,
                       step: Callable[[VideoInfo], int] | None = None) -> OnVideo:
    """Log each stored video to TensorBoard as an animated GIF (TensorBoard's video format: an image
    summary), made with simreel's own MP4→GIF converter at `fps` and at most `max_width` wide.
    `writer` is torch's SummaryWriter or tensorboardX's. `step(info)` gives the global step (default:
    the video's episode, or its step for step-triggered clips).

    Why not `writer.add_video`: it needs `moviepy.editor`, which moviepy 2 removed, and then drops
    the video with only a printed line."""
    import tempfile
    from pathlib import Path

    import av
    from tensorboard.compat.proto.summary_pb2 import Summary

    from simreel.media.gif import mp4_to_gif

    lock = threading.Lock()

    def on_video(info: VideoInfo) -> None:
        if info.get("status") != "completed" or not info.get("path") or not str(info["path"]).endswith(".mp4"):
            return
        global_step = step(info) if step else (info.get("episode") if info.get("episode") is not None
                                               else info.get("step") or 0)
        with tempfile.TemporaryDirectory(prefix="simreel-tb-") as tmp:
            gif = Path(tmp) / "video.gif"
            with av.open(str(info["path"])) as c:
                wide = c.streams.video[0].codec_context.width > max_width
            meta = mp4_to_gif(info["path"], gif, fps=min(fps, int(info.get("fps") or fps)),
                              width=max_width if wide else None)
            image = Summary.Image(height=meta.height, width=meta.width, colorspace=3,
                                  encoded_image_string=gif.read_bytes())
        with lock:
            writer._get_file_writer().add_summary(
                Summary(value=[Summary.Value(tag=tag.format(name=info["name"]), image=image)]), global_step)
            writer.flush()

    return on_video
