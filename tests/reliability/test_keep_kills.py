"""Keep decisions are exact and durable: with the encoder and an uploader killed (SIGKILL) mid-run, a
run with a keep rule keeps the same episodes as an undisturbed run of the same request, with
byte-identical videos, and leaves no video of a discarded episode.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from simreel.contract import events as ev
from simreel.contract import keep
from simreel.runtime.config import NatsSettings

from simreel.sim.package import sha256_file
from tests.support.eventlog import Tap, claimed, frames_in_stream, submit, wait_result
from tests.support.processes import GATED_POLICY, Gate, holder_of, kill
from tests.support.runs import request
from tests.support.waits import until

pytestmark = pytest.mark.integration

GATED = {"SIMREEL_POLICY_ALLOWLIST": GATED_POLICY}
GATE_AT_S = 3.0  # 45 frames of episode 0: past the first full FrameBatch, so frames are in FRAMES
# every(3) keeps episodes 0 and 3 when they end; worst(1) decides the others at the run's end.
RULE = keep.every(3) | keep.worst(1)


def keep_request(run_id: str, gate: Gate) -> ev.SimRequested:
    return request(run_id, duration_s=4.0, episodes=4, policy=GATED_POLICY, policy_params=gate.params,
                   outputs=ev.OutputSpec(keep=RULE))


def fate(tap: Tap, run_id: str) -> tuple[list[int], list[int]]:
    return (sorted(e.episode for e in tap.of(run_id, ev.EpisodeKept)),
            sorted(e.episode for e in tap.of(run_id, ev.EpisodeDiscarded)))


async def test_killing_encoder_and_uploader_mid_run_changes_nothing_kept(make_stack, tmp_path):
    stack = make_stack(env=GATED, replicas={"encoder": 2, "uploader": 2})
    nats = NatsSettings(url=stack.url)
    always_open, gate = Gate(tmp_path / "open", GATE_AT_S), Gate(tmp_path / "gate", GATE_AT_S)
    always_open.open()
    async with Tap(nats) as tap:
        js = tap.nc.jetstream()
        clean, faulty = keep_request("keep-clean", always_open), keep_request("keep-killed", gate)
        await submit(nats, clean)
        clean_result = await wait_result(nats, clean.run_id, timeout=180)
        assert clean_result.ok, clean_result.error

        await submit(nats, faulty)
        await tap.wait(lambda evs: tap.of(faulty.run_id, ev.SimStarted), timeout=60, what="SimStarted")
        await until(lambda: claimed(js, "encoder"), timeout=60, what="an encoder to claim the run")
        await until(lambda: frames_in_stream(js, faulty.run_id), timeout=30, what="first frames")
        encoder = await until(lambda: holder_of(stack, "encoder", faulty.run_id, "encode_started"), timeout=30,
                              what="the encoder that claimed the run")
        kill(encoder)
        gate.open()
        # Episode 0 is kept at its end and its video held by the surviving encoder: kill an uploader
        # while the decisions and the held videos meet.
        await tap.wait(lambda evs: tap.of(faulty.run_id, (ev.EpisodeKept, ev.EpisodeDiscarded)), timeout=120,
                       what="the first keep decision")
        kill(stack.procs["uploader"][0])

        result = await wait_result(nats, faulty.run_id, timeout=240)
        assert result.ok, result.error
        assert fate(tap, faulty.run_id) == fate(tap, clean.run_id)
        kept, discarded = fate(tap, clean.run_id)
        assert {0, 3} <= set(kept) and len(kept) in (2, 3) and sorted(kept + discarded) == [0, 1, 2, 3]
        assert discarded  # the rule dropped something, so the comparison says something

    def videos(r):
        return {a.episode: a for a in r.artifacts if a.kind == "video"}

    a, b = videos(clean_result), videos(result)
    assert sorted(a) == sorted(b) == kept
    for episode in kept:
        assert a[episode].sha256 == b[episode].sha256 == sha256_file(b[episode].path)
        assert Path(a[episode].path).read_bytes() == Path(b[episode].path).read_bytes()
    staged = stack.data_dir / "staging" / faulty.run_id
    await until(lambda: not any(p.is_file() for p in staged.rglob("*")), timeout=60,
                what="the discarded candidates' staged files to go")
