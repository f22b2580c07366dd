"""Async SDK for other programs: submit a request, follow its events, wait for its artifacts.

Typed with the same msgspec Structs the services use; everything goes through NATS, so a client on
another machine works the same as one next to the stack.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import msgspec

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.runtime.config import NatsSettings
from simreel.readmodels.projections import RunState, fold_runs
from simreel.transport.scenefiles import SceneFileStore, UploadReport
from simreel.sim.package import ScenePackage


class RequestTooLarge(ValueError):
    """A request that would not fit in one NATS message."""


@dataclass
class RunResult:
    run_id: str
    status: str
    artifacts: list[ev.ArtifactStored] = field(default_factory=list)
    error: str | None = None
    error_code: str | None = None
    state: RunState | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        """The `simreel run --json` shape: stable, documented in docs/events.md."""
        arts = []
        for a in sorted(self.artifacts, key=lambda a: (a.kind, a.episode if a.episode is not None else -1, a.key)):
            arts.append({"kind": a.kind, "format": a.format, "episode": a.episode, "url": a.url, "path": a.path,
                         "key": a.key, "bytes": a.bytes, "sha256": a.sha256})
        out: dict[str, Any] = {"run_id": self.run_id, "status": self.status, "artifacts": arts}
        if self.error:
            out["error"] = {"code": self.error_code, "message": self.error}
        return out


class Client:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    @classmethod
    async def connect(cls, settings: NatsSettings | None = None, *, url: str | None = None) -> "Client":
        settings = settings or NatsSettings.from_env(url=url)
        return cls(await Bus.connect(settings, name="simreel-client"))

    async def close(self) -> None:
        await self.bus.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def upload_scene(self, package: ScenePackage,
                           on_progress: Callable[[int, int], None] | None = None) -> UploadReport:
        """Put the package's files that the scene-file store lacks (none, for a robot run before)."""
        return await SceneFileStore(self.bus).upload(package.local, package.files, on_progress=on_progress)

    async def submit(self, request: ev.SimRequested | dict[str, Any], *, scene: ScenePackage | None = None) -> str:
        """Publish a SimRequested; returns its run id. A dict is validated like a wire message.

        With `scene` (from `simreel.sim.package.pack("robot.xml", ...)`), its files are uploaded
        first (only those the store lacks) and the request names them."""
        if isinstance(request, dict):
            request = msgspec.convert({"type": "SimRequested", **request}, ev.SimRequested)
        if scene is not None:
            await self.upload_scene(scene)
            request = msgspec.structs.replace(request, scene=scene.entry, files=scene.files)
        # The request's id is derived from the run id: resubmitting the same run within the
        # duplicate window is one request, not two runs.
        request = request.with_request_id()
        size = len(ev.encode(request))
        if size > self.bus.max_payload:
            raise RequestTooLarge(
                f"the request is {size} bytes, over this server's max_payload of {self.bus.max_payload}: ship large "
                "scenes and assets as scene files (simreel.sim.package.pack + Client.submit(scene=...))")
        await self.bus.publish(request)
        return request.run_id

    async def events(self, run_id: str) -> AsyncIterator[ev.Event]:
        """Every event of a run, from its first, as it happens (the caller decides when to stop)."""
        async for e in self.bus.follow(subjects.run_events(run_id)):
            yield e

    async def wait(self, run_id: str, *, timeout: float | None = None,
                   on_event: Callable[[ev.Event, RunState], None] | None = None) -> RunResult:
        state = RunState(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout

        async def _follow() -> None:
            async for e in self.events(run_id):
                state.apply(e)
                if on_event is not None:
                    on_event(e, state)
                if state.finished:
                    return

        try:
            await asyncio.wait_for(_follow(), None if deadline is None else max(0.0, deadline - time.monotonic()))
            status = state.status
        except asyncio.TimeoutError:
            status = "timeout"
        return RunResult(run_id=run_id, status=status, artifacts=list(state.artifacts.values()), error=state.error
                         or (f"no result within {timeout}s (state: {state.status})" if status == "timeout" else None),
                         error_code=state.error_code or ("timeout" if status == "timeout" else None), state=state)

    async def run(self, request: ev.SimRequested, *, timeout: float | None = None,
                  on_event: Callable[[ev.Event, RunState], None] | None = None,
                  scene: ScenePackage | None = None) -> RunResult:
        run_id = await self.submit(request, scene=scene)
        return await self.wait(run_id, timeout=timeout, on_event=on_event)

    async def videos(self, *, from_start: bool = False) -> AsyncIterator[ev.VideoAvailable]:
        """Every VideoAvailable (all runs), for systems that react to new videos."""
        async for e in self.bus.follow(subjects.all_of(ev.VideoAvailable), from_start=from_start):
            if isinstance(e, ev.VideoAvailable):
                yield e

    async def stored(self, *, from_start: bool = False) -> AsyncIterator[ev.ArtifactStored]:
        async for e in self.bus.follow(subjects.all_of(ev.ArtifactStored), from_start=from_start):
            if isinstance(e, ev.ArtifactStored):
                yield e

    async def request_of(self, run_id: str) -> ev.SimRequested | None:
        """The SimRequested a run was made from, read back from the event log."""
        found = None
        async for e in self.bus.replay(subjects.SIM_REQUESTED):
            if isinstance(e, ev.SimRequested) and e.run_id == run_id:
                found = e
        return found

    async def runs(self) -> list[RunState]:
        events = [e async for e in self.bus.replay()]
        return sorted(fold_runs(events).values(), key=lambda r: r.requested_at or r.updated_at)


def run_sync(request: ev.SimRequested, *, url: str | None = None, timeout: float | None = None) -> RunResult:
    """For scripts: submit to a running stack and block until the run finishes."""

    async def _main() -> RunResult:
        async with await Client.connect(url=url) as c:
            return await c.run(request, timeout=timeout)

    return asyncio.run(_main())
