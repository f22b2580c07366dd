"""The drop-ins inside someone else's script: its stdout is its own, its logging configuration decides.

Each script wraps an env in one drop-in (embedded stack: nothing configured), records a video, and
prints exactly one JSON line. `python train.py | jq` must keep working, so stdout must be exactly that
line; simreel's log lines go through `logging` (the script's handler here, on stderr), and simreel adds
no handler to the root logger.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

_PRELUDE = textwrap.dedent("""
    import json, logging, sys
    import gymnasium as gym
    import numpy as np
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="APP %(name)s %(message)s")
    root_handlers = list(logging.getLogger().handlers)
    folder = sys.argv[1]
    kw = dict(render_mode="rgb_array", width=64, height=48)
""")

SCRIPTS = {
    "simreel.gym.RecordVideo": """
        from simreel.gym import RecordVideo
        env = RecordVideo(gym.make("InvertedPendulum-v5", **kw), folder, episode_trigger=lambda e: True,
                          disable_logger=False)
        env.reset(seed=0)
        for _ in range(6):
            env.step(env.action_space.sample())
        env.close()
        videos = len(env.videos)
    """,
    "simreel.gym.vector.RecordVideo": """
        from simreel.gym.vector import RecordVideo
        envs = gym.make_vec("InvertedPendulum-v5", num_envs=2, vectorization_mode="sync", **kw)
        envs = RecordVideo(envs, folder, episode_trigger=lambda e: True, disable_logger=False)
        envs.reset(seed=0)
        for _ in range(6):
            envs.step(envs.action_space.sample())
        envs.close()
        videos = len(envs.videos)
    """,
    "simreel.sb3.VecVideoRecorder": """
        from stable_baselines3.common.env_util import make_vec_env
        from simreel.sb3 import VecVideoRecorder
        venv = make_vec_env("InvertedPendulum-v5", n_envs=2, seed=0, env_kwargs=kw)
        venv = VecVideoRecorder(venv, folder, record_video_trigger=lambda s: s == 0, video_length=4,
                                disable_logger=False)
        venv.reset()
        for _ in range(6):
            venv.step(np.zeros((2, 1), np.float32))
        venv.close()
        videos = len(venv.videos)
    """,
}

_EPILOGUE = textwrap.dedent("""
    assert logging.getLogger().handlers == root_handlers, "the root logger was reconfigured"
    print(json.dumps({"videos": videos}))
""")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("drop_in", sorted(SCRIPTS))
def test_stdout_is_exactly_the_scripts_line(tmp_path, drop_in):
    script = _PRELUDE + textwrap.dedent(SCRIPTS[drop_in]) + _EPILOGUE
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}
    env.setdefault("MUJOCO_GL", "egl")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "videos")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=200)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout[-3000:]
    assert json.loads(lines[0])["videos"] >= 1  # the script's own line, intact (episodes may end early)
    # simreel's lines went through the script's own logging handler (stderr), under simreel.*
    assert "APP simreel.process_stack event='embedded_stack_started'" in out.stderr, out.stderr[-3000:]
    assert "APP simreel.process_stack event='embedded_stack_stopped'" in out.stderr
