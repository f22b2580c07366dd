"""Fixtures of the reliability suite: real stacks (nats-server + service processes) that tests may
break, and one real S3 server (SeaweedFS) shared by the tests that need it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from simreel.stack.embedded import SERVICES, Stack

# Quick redelivery after a kill, a short shutdown grace so teardown never waits long, info logs.
BASE_ENV = {
    "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    "SIMREEL_ACK_WAIT_S": "5",
    "SIMREEL_SHUTDOWN_GRACE_S": "2",
    "SIMREEL_FRAME_IDLE_TIMEOUT_S": "30",
    "SIMREEL_FRAMES_JANITOR_S": "1",  # frames of unknown runs are dead-lettered within seconds
    "SIMREEL_LOG_LEVEL": "info",
    "SIMREEL_LOG_FORMAT": "json",
    "PYTHONFAULTHANDLER": "1",  # a native crash in a service prints its Python stacks into its log
}


@pytest.fixture
def make_stack(tmp_path):
    """Start a Stack with extra env / replicas; every stack is stopped at teardown (logs printed, so
    a failing test shows them)."""
    stacks: list[Stack] = []

    def make(env: dict[str, str] | None = None, replicas: dict[str, int] | None = None,
             services=SERVICES, nats_args=(), start: bool = True) -> Stack:
        e = dict(os.environ)
        e.update(BASE_ENV)
        e.update(env or {})
        d = tmp_path / f"stack{len(stacks)}"
        s = Stack(data_dir=d / "data", out_dir=d / "out", env=e, replicas=replicas, services=services)
        s.nats.extra_args = list(nats_args)
        stacks.append(s)
        if start:
            s.start()
        return s

    yield make
    stuck = []
    for s in stacks:
        try:
            s.stop()  # bounded: a process that does not stop is named, after the others were stopped
        except TimeoutError as e:
            stuck.append(str(e))
        print(f"==== logs of {s.data_dir}\n{s.logs()[-15000:]}")
    assert not stuck, "; ".join(stuck)


@pytest.fixture(scope="session")
def s3server(tmp_path_factory):
    """One SeaweedFS S3 server for the suite; a test that stops it must start it again."""
    from tests.support.s3server import S3Server
    server = S3Server(Path(tmp_path_factory.mktemp("weed")))
    server.start()
    try:
        yield server
    finally:
        server.close()
