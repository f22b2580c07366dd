"""Episodes as parallel worlds: one seed per world, stepped and rendered together by a render engine.

The timing rules are EpisodeRunner's (simreel.sim.rollout): frame k of every world is rendered at
sim time exactly k/fps (FrameSchedule), the frame count follows duration_s / max_steps, and each
world's episode gets its own EpisodeSummary. All worlds share one schedule, so they render together.

Memory is one frame per world: the engine renders the batch into one reused buffer and `on_frame`
gets a view of each world's frame, which it must copy (e.g. `tobytes()`) before returning.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from simreel.media.stats import FrameStats
from simreel.sim.engines import RenderEngine
from simreel.sim.errors import PolicyError
from simreel.sim.policies import Policy
from simreel.sim.rollout import EpisodeSummary, FrameOut, FrameSchedule

__all__ = ["BatchRunner", "run_batched"]


class BatchRunner:
    """Runs `engine.worlds` episodes at once on an engine from simreel.sim.engines.

        engine = engines.create("mjwarp", model, width=160, height=120, worlds=4)
        runner = BatchRunner(engine, fps=30)
        summaries = runner.run(seeds=[0, 1, 2, 3], policies=[...], duration_s=2.0,
                               on_frame=lambda world, f: sink[world].append(f.pixels.tobytes()))
    """

    def __init__(self, engine: RenderEngine, *, fps: float, perturb_scale: float = 0.01,
                 state_fields: Sequence[str] = (), streams: Sequence[str] = ("rgb",)) -> None:
        """`state_fields` (qpos, qvel, sensordata) are copied into each FrameOut's `state`, as
        EpisodeRunner does; `streams` beyond rgb (the engine was created with) into its `planes`."""
        bad = [f for f in state_fields if f not in ("qpos", "qvel", "sensordata")]
        if bad:
            raise ValueError(f"state_fields must be qpos, qvel or sensordata, got {bad[0]!r}")
        self.state_fields = tuple(state_fields)
        self.engine = engine
        self.model = engine.model
        self.schedule = FrameSchedule.of(self.model.opt.timestep, fps)
        self.perturb_scale = float(perturb_scale)
        self.frames = np.zeros((engine.worlds, *engine.frame_shape), dtype=np.uint8)
        rows_cols = (engine.worlds, *engine.frame_shape[:2])
        self.planes = {x: np.zeros(rows_cols + ((4,) if x == "segmentation" else ()),
                                   np.uint8 if x == "segmentation" else "<u2")
                       for x in streams if x != "rgb"}
        nu = self.model.nu
        limited = np.asarray(self.model.actuator_ctrllimited, dtype=bool).reshape(-1)
        rng = np.asarray(self.model.actuator_ctrlrange, dtype=float).reshape(-1, 2)
        self._lo = np.where(limited, rng[:, 0], -np.inf)
        self._hi = np.where(limited, rng[:, 1], np.inf)
        self._ctrl = np.zeros((engine.worlds, nu))

    def plan(self, duration_s: float | None = None, max_steps: int | None = None) -> tuple[int, int]:
        return self.schedule.plan(duration_s, max_steps)

    def _act(self, policies: Sequence[Policy], t: float) -> None:
        states = self.engine.states()
        for i, (policy, state) in enumerate(zip(policies, states)):
            try:
                a = policy(self.model, state, state.time)
            except PolicyError:
                raise
            except Exception as e:
                raise PolicyError(f"policy of world {i} failed at t={t:.4f}s: {type(e).__name__}: {e}") from e
            a = np.asarray(a, dtype=float).reshape(-1)
            if a.size != self.model.nu:
                raise PolicyError(f"policy returned {a.size} value(s); the scene has {self.model.nu} actuator(s)")
            if not np.isfinite(a).all():
                raise PolicyError(f"policy of world {i} returned NaN/inf at t={t:.4f}s")
            np.clip(a, self._lo, self._hi, out=self._ctrl[i])

    def run(
        self,
        *,
        seeds: Sequence[int],
        policies: Sequence[Policy],
        duration_s: float | None = None,
        max_steps: int | None = None,
        on_frame: Callable[[int, FrameOut], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[EpisodeSummary]:
        """One episode per world; `on_frame(world, frame)` for each world's frame k before frame k+1
        of any world is rendered."""
        eng, sched, buf = self.engine, self.schedule, self.frames
        n = eng.worlds
        if len(seeds) != n or len(policies) != n:
            raise ValueError(f"{len(seeds)} seeds and {len(policies)} policies for {n} worlds")
        n_frames, total_steps = sched.plan(duration_s, max_steps)
        dt = float(sched.dt)
        eng.reset(list(seeds), self.perturb_scale)
        self._ctrl[:] = 0.0
        stats = [FrameStats(buf.shape[2], buf.shape[1]) for _ in range(n)]
        ret = np.zeros(n)
        since = np.zeros(n)
        step, max_off, render_s, physics_s, stopped = 0, 0.0, 0.0, 0.0, False

        def advance(target: int) -> None:
            nonlocal step, physics_s
            t0 = time.perf_counter()
            while step < target:
                self._act(policies, step * dt)
                eng.step(self._ctrl)
                step += 1
                if self.model.nu:
                    r = -np.einsum("ij,ij->i", self._ctrl, self._ctrl) * dt
                    ret[:] += r
                    since[:] += r
            physics_s += time.perf_counter() - t0

        for k in range(n_frames):
            if should_stop():
                stopped = True
                break
            advance(sched.step_for(k))
            t0 = time.perf_counter()
            eng.render(buf, self.planes) if self.planes else eng.render(buf)
            render_s += time.perf_counter() - t0
            t_k = sched.frame_time(k)
            max_off = max(max_off, sched.offset(k))
            states = eng.states() if self.state_fields else None
            for w in range(n):
                stats[w].update(buf[w])
                state = {f: np.asarray(getattr(states[w], f)).tolist() for f in self.state_fields} if states else None
                planes = {x: p[w] for x, p in self.planes.items()} or None
                on_frame(w, FrameOut(k, t_k, step, buf[w], float(since[w]), self._ctrl[w].tolist(), state, planes))
            since[:] = 0.0
        if not stopped:
            advance(total_steps)
        return [
            EpisodeSummary(
                seed=int(seeds[w]), steps=step, frames=stats[w].frames, sim_time=float(step * sched.dt),
                return_=float(ret[w]), render_ms_total=render_s * 1e3 / n, physics_ms_total=physics_s * 1e3 / n,
                blank=stats[w].black, frozen=stats[w].frozen,
                warnings=stats[w].warnings() if stats[w].frames else [],
                max_frame_time_offset=max_off, stopped=stopped,
            )
            for w in range(n)
        ]


def run_batched(
    engine_name: str,
    model,
    *,
    width: int,
    height: int,
    fps: float,
    cameras: Sequence,
    quality: str,
    options: dict,
    seeds: Sequence[int],
    make_policy: Callable[[object, int], Policy],
    duration_s: float | None,
    max_steps: int | None,
    max_worlds: int,
    on_started: Callable[[object], None],
    on_frame: Callable[[int, FrameOut], None],
    on_episode: Callable[[int, EpisodeSummary], None],
    should_stop: Callable[[], bool] = lambda: False,
    state_fields: Sequence[str] = (),
    streams: Sequence[str] = ("rgb",),
) -> None:
    """A run's episodes on a batch engine: `max_worlds` episodes at a time as parallel worlds, one
    seed per world; the last batch is filled up with repeats of its first seed whose frames are
    dropped, so one engine (one kernel compile, one device allocation) serves the whole run.

    `on_started(engine.info)` once the engine is up; `on_frame(episode, frame)` with the episode's
    index in the run; `on_episode(episode, summary)` for every episode of a batch after its last frame.
    """
    from simreel.sim import engines

    worlds = max(1, min(len(seeds), int(max_worlds)))
    eng = engines.create(engine_name, model, width=width, height=height, cameras=cameras, worlds=worlds,
                         quality=quality, options=options, streams=streams)
    try:
        on_started(eng.info)
        runner = BatchRunner(eng, fps=fps, state_fields=state_fields, streams=streams)
        for first in range(0, len(seeds), worlds):
            batch = list(seeds[first:first + worlds])
            real = len(batch)
            batch += [batch[0]] * (worlds - real)

            def frame(w: int, f: FrameOut, first=first, real=real) -> None:
                if w < real:
                    on_frame(first + w, f)

            summaries = runner.run(seeds=batch, policies=[make_policy(eng.model, s) for s in batch],
                                   duration_s=duration_s, max_steps=max_steps, on_frame=frame,
                                   should_stop=should_stop)
            if summaries and summaries[0].stopped:
                return
            for w in range(real):
                on_episode(first + w, summaries[w])
    finally:
        eng.close()
