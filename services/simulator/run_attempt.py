"""One attempt of a prepared request: the render thread's messages become the run's events.

Frames go straight to the publisher (they are the data plane); SimStarted, each EpisodeEnded (and the
keep rule's decisions), then SceneSaved and SimCompleted are yielded to the bus, or one SimFailed.
"""
from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any, AsyncIterator

import msgspec
import numpy as np

from simreel.contract import events as ev
from simreel.contract import streams
from simreel.runtime.config import Settings
from simreel.sim import loader, perception
from simreel.sim.errors import PolicyError, SceneError
from simreel.sim.rollout import EpisodeSummary
from simreel.transport.bus import HandlerBus
from simreel.transport.handoff import Handoff
from simreel.transport.run_publisher import EpisodeOutcome, RunKeeper, RunPublisher
from simreel.transport.staging import Staging

from .prepare import Prepared
from .worker import (EpisodeRendered, FrameRendered, RendererReady, WorkerDone, WorkerFailed, WorkerJob,
                     WorkerMessage, run_in_thread)


class RunAttempt:
    """What the attempt learns as it runs (the renderer, the perception of its streams) is kept here
    for SimStarted and the report."""

    def __init__(self, bus: HandlerBus, settings: Settings, staging: Staging, req: ev.SimRequested, attempt: int,
                 prepared: Prepared, log) -> None:
        self.settings = settings
        self.staging = staging
        self.req = req
        self.attempt = attempt
        self.prepared = prepared
        self.log = log
        job = self.job = prepared.job
        self.views = len(job.cameras) if (len(job.cameras) > 1 and not job.tile) else 1
        self.frame_width = job.width * (len(job.cameras) if job.tile else 1)
        self.frame_height = job.height * self.views
        self.pub = RunPublisher(bus, run_id=req.run_id, attempt=attempt, session=req.session, fps=job.fps,
                                frame_width=self.frame_width, frame_height=self.frame_height,
                                inflight_bytes=settings.inflight_bytes, compression=settings.frame_compression,
                                streams=job.streams)
        self.keeper = RunKeeper(req.outputs.keep, self.pub) if req.outputs.keep is not None else None
        self.cancel = threading.Event()
        self.gl: dict = {}
        self.engine: dict = {}
        self.perceived: ev.Perception | None = None

    async def events(self) -> AsyncIterator[ev.Event]:
        handoff: Handoff[WorkerMessage] = Handoff(asyncio.get_running_loop(), max_items=self.settings.frame_queue)
        thread = run_in_thread(self.job, handoff, self.cancel)
        publish_frame = self.pub.frame
        # With more streams than rgb, SimStarted waits for the first frame, which fixes the run's
        # depth preview range.
        start_pending = False
        try:
            while True:
                message = await handoff.get()
                if start_pending and not isinstance(message, (RendererReady, WorkerFailed)):
                    start_pending = False
                    yield self.started(message.pixels if isinstance(message, FrameRendered) else None)
                match message:
                    case FrameRendered(episode, index, t, pixels, telemetry):
                        await publish_frame(episode, index, t, pixels, telemetry)
                    case EpisodeRendered(episode, summary):
                        async for e in self.episode_ended(episode, summary):
                            yield e
                        if self.req.fail_on_blank and (summary.blank or summary.frozen):
                            yield await self.failed_on_blank(episode, summary)
                            return
                    case RendererReady(gl, engine):
                        self.gl, self.engine = gl, engine
                        if len(self.job.streams) > 1:
                            start_pending = True
                        else:
                            yield self.started(None)
                        self.log_renderer()
                    case WorkerFailed(err):
                        yield await self.failed(err)
                        return
                    case WorkerDone():
                        break
        finally:
            self.cancel.set()
            await asyncio.to_thread(thread.join, 10)
        async for e in self.completed():
            yield e

    def log_renderer(self) -> None:
        gl, engine = self.gl, self.engine
        self.log.info("sim_started", gl_backend=gl.get("backend"), gl_renderer=gl.get("renderer"),
                      engine=engine.get("engine"), worlds=engine.get("worlds"), warmup_s=engine.get("warmup_s"),
                      frames_per_episode=self.prepared.n_frames, episodes=self.req.episodes)

    def started(self, first_frame: bytes | None) -> ev.SimStarted:
        job, req = self.job, self.req
        preview = None
        if first_frame is not None and "depth" in job.streams:
            depth = streams.planes(first_frame, self.frame_width, self.frame_height, job.streams)["depth"]
            preview = perception.preview_range(np.frombuffer(depth, "<u2"), perception.clip_planes(job.model))
        self.perceived = perception.perception(job.model, job.streams, preview_m=preview)
        return self.pub.started(
            scene=self.prepared.label, episodes=req.episodes, frames_per_episode=[self.prepared.n_frames] * req.episodes,
            width=self.frame_width if job.tile else job.width, height=job.height, outputs=req.outputs,
            cameras=job.cameras, views=self.views, tile=job.tile, physics_dt=physics_dt(job), gl=self.gl,
            engine=job.engine, worlds=self.engine.get("worlds", 1),
            telemetry_names=self.prepared.recorded.names if req.outputs.telemetry else None,
            perception=self.perceived)

    async def episode_ended(self, episode: int, s: EpisodeSummary) -> AsyncIterator[ev.Event]:
        """EpisodeEnded, then what the keep rule decides on it."""
        outcome = episode_outcome(s)
        yield await self.pub.end_episode(episode, outcome, {"render_ms": round(s.render_ms_total, 1),
                                                            "physics_ms": round(s.physics_ms_total, 1)})
        for decided in self.keeper.ended(episode, outcome) if self.keeper else ():
            yield decided
        self.log.info("episode_ended", episode=episode, frames=s.frames, steps=s.steps, blank=s.blank, frozen=s.frozen)
        if s.warnings:
            self.log.warning("blank_or_frozen_frames", episode=episode, warnings=list(s.warnings))

    async def failed_on_blank(self, episode: int, s: EpisodeSummary) -> ev.SimFailed:
        self.cancel.set()
        await self.pub.abort(episode + 1)
        return ev.SimFailed.of(self.req.run_id, self.attempt, "blank_frames",
                               f"episode {episode}: {'; '.join(s.warnings)}", "fail_on_blank")

    async def failed(self, err: BaseException) -> ev.SimFailed:
        self.log.error("sim_failed", error=f"{type(err).__name__}: {err}")
        await self.pub.abort(len(self.pub.episodes))
        code: ev.FailureCode = "policy_forbidden" if isinstance(err, PolicyError) else (
            "scene_invalid" if isinstance(err, SceneError) else "render_failed")
        return ev.SimFailed.of(self.req.run_id, self.attempt, code, f"{type(err).__name__}: {err}",
                               "policy" if code == "policy_forbidden" else None)

    async def completed(self) -> AsyncIterator[ev.Event]:
        """The keep rule's last decisions, SceneSaved (Gymnasium scenes have no MJCF of ours to save),
        then SimCompleted."""
        job = self.job
        scene_event = await save_scene(self.staging, self.req, self.attempt, job.model) if job.model is not None else None
        report = self.report()
        for decided in self.keeper.close() if self.keeper else ():
            yield decided  # worst/best k over the run: decided now, before SimCompleted
        completed = await self.pub.completed(self.req, report, scene_saved=scene_event is not None)
        self.log.info("sim_completed", frames=completed.frames, wall_s=round(completed.wall_s, 2))
        if scene_event is not None:
            yield scene_event
        yield completed

    def report(self) -> dict[str, Any]:
        job, recorded = self.job, self.prepared.recorded
        extra: dict[str, Any] = {"request": request_summary(self.req), "frames_per_episode": self.prepared.n_frames,
                                 "engine": self.engine, "telemetry_fields": list(recorded.fields)}
        if len(job.streams) > 1:
            extra["streams"] = streams.report(job.streams, self.perceived, width=self.frame_width,
                                              height=self.frame_height)
        if recorded.skipped:
            extra["telemetry_skipped"] = recorded.skipped
        return self.pub.report(scene=self.prepared.label, gl=self.gl,
                               render={"width": job.width, "height": job.height, "fps": job.fps,
                                       "cameras": job.cameras, "tile": job.tile, "quality": job.quality},
                               physics_dt=physics_dt(job), extra=extra)


def episode_outcome(s: EpisodeSummary) -> EpisodeOutcome:
    """A Gymnasium summary says terminated/truncated; an MJCF episode ends on time (truncated)."""
    return EpisodeOutcome(seed=s.seed, steps=s.steps, frames=s.frames, episode_return=s.return_,
                          terminated=getattr(s, "terminated", False), truncated=getattr(s, "truncated", True),
                          sim_time_s=s.sim_time, wall_s=(s.render_ms_total + s.physics_ms_total) / 1000,
                          blank=s.blank, frozen=s.frozen, warnings=list(s.warnings))


async def save_scene(staging: Staging, req: ev.SimRequested, attempt: int, model) -> ev.SceneSaved:
    xml = await asyncio.to_thread(loader.compiled_xml, model)
    data = xml.encode()
    p = staging.tempdir() / "scene.xml"
    p.write_bytes(data)
    ref = await staging.put(f"{req.run_id}/{attempt}/scene.xml", p)
    return ev.SceneSaved(event_id=f"scene-{req.run_id}-{attempt}", run_id=req.run_id, attempt=attempt,
                         session=req.session, staged=ref, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def physics_dt(job: WorkerJob) -> float:
    return float(job.model.opt.timestep) if job.model is not None else job.physics_dt


def request_summary(req: ev.SimRequested) -> dict:
    d = msgspec.to_builtins(req)
    d.pop("assets", None)
    if isinstance(d.get("scene"), str) and len(d["scene"]) > 200:
        d["scene"] = d["scene"][:200] + "…"
    d["asset_names"] = sorted(req.assets)
    return d
