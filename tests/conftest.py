"""Shared fixtures: real nats-server processes on free ports, and the real simreel stack.

Nothing here mocks NATS or storage: integration tests talk to processes these fixtures start and stop.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")


import pytest  # noqa: E402

from simreel.runtime import log as logs  # noqa: E402
from simreel.stack.embedded import NatsServer, Stack  # noqa: E402


@pytest.fixture
def library_state():
    """simreel's logging as a library finds it (other tests of this process may have called setup());
    whatever was there is put back afterwards."""
    with logs.as_library():
        yield


@pytest.fixture
def nats_server(tmp_path):
    with NatsServer(store_dir=tmp_path / "nats") as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """NATS + simulator, encoder, uploader, retention as separate processes (shared by a module)."""
    base = tmp_path_factory.mktemp("stack")
    env = dict(os.environ)
    env.update({"SIMREEL_FRAME_IDLE_TIMEOUT_S": "30", "SIMREEL_LOG_LEVEL": "info"})
    s = Stack(data_dir=base / "data", out_dir=base / "out", env=env)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        if os.environ.get("SIMREEL_TEST_SHOW_LOGS"):
            print(s.logs())


# The scene and size every MuJoCo Warp test renders: kernels are compiled per scene and options, so
# tests that share them share one compile.
MJWARP_SCENE, MJWARP_SIZE = "cartpole", (48, 32)


@pytest.fixture(scope="session")
def mjwarp_warm():
    """Compile MuJoCo Warp's kernels for the test scene ONCE per test run (tens of seconds on a CPU
    the first time; Warp caches them under ~/.cache/warp, where the simulator processes of the
    integration tests find them too). Returns the engine's report of that warm-up."""
    from simreel.sim import engines
    from simreel.sim.loader import resolve_scene

    model, _ = resolve_scene(MJWARP_SCENE)
    eng = engines.create("mjwarp", model, width=MJWARP_SIZE[0], height=MJWARP_SIZE[1], worlds=1, quality="fast",
                         options={"device": "cpu"})
    eng.close()
    return eng.info
