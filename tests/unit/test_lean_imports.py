"""A training process that only records must not load what only the encoder, ui or console use."""
import json
import subprocess
import sys

_PROBE = """
import json, sys
import gymnasium, numpy
import simreel.gym, simreel.gym.vector
print(json.dumps({m: m in sys.modules for m in ("av", "aiohttp", "rich", "minio", "mujoco")}))
"""


def _loaded(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_recorder_process_loads_no_encoder_ui_or_console_libraries():
    assert _loaded(_PROBE) == {"av": False, "aiohttp": False, "rich": False, "minio": False, "mujoco": False}


def test_hidden_libraries_still_import_and_websockets_get_aiohttp_back():
    code = """
import json, sys
import simreel.transport.bus, simreel.runtime.log
import nats.aio.transport as t
before = t.aiohttp is None
import rich.console, aiohttp, simreel.media
simreel.media.Mp4Writer  # the lazy package still hands out its names
from simreel.runtime import lean_imports
lean_imports.websockets()
print(json.dumps({"hidden_before": before, "ws_ready": t.aiohttp is aiohttp, "av": "av" in sys.modules}))
"""
    assert _loaded(code) == {"hidden_before": True, "ws_ready": True, "av": True}
