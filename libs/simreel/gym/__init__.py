"""`simreel.gym.RecordVideo`: a drop-in for `gymnasium.wrappers.RecordVideo` that streams frames to
the simreel bus instead of keeping them in RAM and encoding them in the env's thread.

Same constructor, same triggers, same file names: the episodes and steps that gymnasium would record
are recorded, and `video_folder/{name_prefix}-episode-{n}.mp4` (or `-step-{n}`) appear when they are
stored. What changes is behaviour: `step()` copies the rendered frame into a bounded queue and
returns; a background thread publishes it (simreel.recorder.RecorderThread); an encoder process turns
it into MP4 while the episode is still running; each video also gets a telemetry.jsonl (reward,
action, terminated, truncated, step per frame) and a report, with URLs in `wrapper.videos`.

Example::

    import gymnasium as gym
    from simreel.gym import RecordVideo

    env = RecordVideo(gym.make("HalfCheetah-v5", render_mode="rgb_array"), "videos",
                      episode_trigger=lambda e: e % 10 == 0)
    for _ in range(30):
        obs, info = env.reset(seed=0)
        done = False
        while not done:
            obs, r, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()                       # waits until every video is stored
    for v in env.videos:
        print(v["path"], v["url"], v["telemetry_url"])

With `SIMREEL_NATS_URL` unset (or `nats_url=None`), an embedded stack (nats-server, encoder, uploader,
retention as child processes) is started on the first recording, stores into `video_folder/.simreel`,
and is stopped by `close()`. With a bus configured, the running simreel services do the work and
the videos are stored wherever that stack stores them (local paths are linked only when visible here).
"""
from __future__ import annotations

from simreel.gym.keeping import keep_outputs as keep_outputs
from simreel.gym.record_video import RecordVideo
from simreel.gym.schedules import capped_cubic_video_schedule, every_episode
from simreel.gym.stored import RecordingError
from simreel.gym.video_info import RecordedVideo
from simreel.recorder.folder import EMBEDDED_DIR as EMBEDDED_DIR

__all__ = ["RecordVideo", "RecordedVideo", "RecordingError", "capped_cubic_video_schedule", "every_episode"]

# Gymnasium names a wrapper by its class's module (wrapper specs, reprs): the public one.
RecordVideo.__module__ = __name__
