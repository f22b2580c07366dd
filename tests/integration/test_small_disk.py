"""Small disks: the FRAMES stream is sized from what the NATS server can hold.

JetStream reserves a stream's max_bytes up front and refuses one larger than its storage (err 10047),
and a server's storage defaults to 75% of the free disk under its store directory. The embedded
stack keeps that directory under its data directory (TMPDIR for `simreel run` and the drop-ins), so
these tests put it on a size-limited tmpfs: a run records on a few hundred MB, and a disk too small to
be useful gets a one-line error.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nats
import pytest

from simreel.transport import bus as simreel_bus
from simreel.contract import subjects
from simreel.transport.bus import FRAMES_MIN_BYTES, Bus, FramesStorageError
from simreel.runtime.config import NatsSettings
from simreel.stack.embedded import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MiB = 1024**2
SIMREEL = [sys.executable, "-m", "simreel.cli"]


@contextlib.contextmanager
def tmpfs(path: Path, size_mib: int):
    """A tmpfs of `size_mib` at `path`, unmounted whatever happens."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)], check=True,
                   capture_output=True, timeout=30)
    try:
        yield path
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
        if done.returncode != 0:  # something still holds a file open: detach it now, freed when closed
            subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True, timeout=30)


def _env(tmpdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}
    env.update(TMPDIR=str(tmpdir), MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return env


async def _frames_max_bytes(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(subjects.FRAMES_STREAM)).config.max_bytes
    finally:
        await nc.close()


async def test_frames_stream_fits_the_servers_storage_and_says_so(tmp_path, library_state, caplog):
    caplog.set_level("INFO", logger="simreel")
    with tmpfs(tmp_path / "fs", 300) as fs, NatsServer(store_dir=fs / "nats") as server:
        bus = await Bus.connect(NatsSettings(url=server.url))
        await bus.close()
        size = await _frames_max_bytes(server.url)
    # The server holds 75% of 300 MiB; FRAMES takes at most half of what it accepted.
    assert FRAMES_MIN_BYTES <= size <= 225 * MiB // 2
    (line,) = [r.simreel_fields for r in caplog.records if getattr(r, "simreel_fields", {}).get("event")
               == "frames_stream_created"]
    assert line["max_bytes"] == size and line["sized_by"] == "server storage"


async def test_an_operator_size_is_kept_or_refused_in_one_sentence(tmp_path):
    with tmpfs(tmp_path / "fs", 300) as fs, NatsServer(store_dir=fs / "nats") as server:
        bus = await Bus.connect(NatsSettings(url=server.url, frames_max_bytes=100 * MiB))
        await bus.close()
        assert await _frames_max_bytes(server.url) == 100 * MiB
    with tmpfs(tmp_path / "fs2", 300) as fs, NatsServer(store_dir=fs / "nats") as server:
        with pytest.raises(FramesStorageError, match=r"cannot hold a FRAMES stream of 1,024 MiB "
                                                     r"\(SIMREEL_FRAMES_MAX_BYTES"):
            await Bus.connect(NatsSettings(url=server.url, frames_max_bytes=1024 * MiB))


def test_simreel_run_records_on_a_small_disk(tmp_path):
    with tmpfs(tmp_path / "fs", 300) as fs:
        proc = subprocess.run([*SIMREEL, "run", "cartpole", "--duration", "0.5", "--fps", "10", "--width", "64",
                               "--height", "48", "--quality", "fast", "--out", str(tmp_path / "out"), "--json"],
                              capture_output=True, text=True, timeout=200, env=_env(fs), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["status"] == "completed"


def test_a_drop_in_records_on_a_small_disk(tmp_path):
    script = textwrap.dedent("""
        import sys
        import gymnasium as gym
        from simreel.gym import RecordVideo
        env = RecordVideo(gym.make("InvertedPendulum-v5", render_mode="rgb_array", width=64, height=48),
                          sys.argv[1], episode_trigger=lambda e: True)
        env.reset(seed=0)
        for _ in range(5):
            env.step(env.action_space.sample())
        env.close()
        print(len(env.videos))
    """)
    with tmpfs(tmp_path / "fs", 300) as fs:
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "videos")], capture_output=True,
                              text=True, timeout=200, env=_env(fs), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "1"


def test_a_disk_too_small_is_one_line(tmp_path):
    with tmpfs(tmp_path / "fs", 40) as fs:  # the server holds 30 MiB: not even FRAMES_MIN_BYTES
        proc = subprocess.run([*SIMREEL, "run", "cartpole", "--duration", "0.5", "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=200, env=_env(fs), cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("simreel: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert (f"cannot hold even {FRAMES_MIN_BYTES // MiB} MiB for the FRAMES stream" in errors[0]
            and "free disk space" in errors[0]), errors[0]


def test_sizes_parse_like_an_operator_writes_them():
    from simreel.runtime.envvars import parse_size

    assert [parse_size(s) for s in ("123", "512MiB", "2GiB", "1.5G", "800MB", "64 mib")] == [
        123, 512 * MiB, 2 * 1024 * MiB, 1_500_000_000, 800_000_000, 64 * MiB]
    with pytest.raises(ValueError):
        parse_size("lots")
    assert simreel_bus.FRAMES_DEFAULT_BYTES == 8 * 1024 * MiB
