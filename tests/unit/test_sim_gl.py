"""GL backend choice (probed in a subprocess) and the renderer report."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

from simreel.sim import gl  # noqa: E402


def test_explicit_mujoco_gl_is_kept():
    env = {"MUJOCO_GL": "OSMesa"}
    assert gl.choose_backend(env) == "osmesa"
    assert env == {"MUJOCO_GL": "OSMesa"}


def test_unset_mujoco_gl_is_probed_and_set():
    env = {}
    chosen = gl.choose_backend(env)
    assert chosen in gl.PROBE_ORDER and env["MUJOCO_GL"] == chosen


def test_precheck_explains_missing_display():
    assert "DISPLAY" in gl.precheck("glfw", {})
    assert gl.precheck("glfw", {"DISPLAY": ":0"}) is None


def test_gl_info_from_a_runner():
    from simreel.sim.loader import resolve_scene
    from simreel.sim.rollout import EpisodeRunner

    model, _ = resolve_scene("pendulum")
    with EpisodeRunner(model, width=32, height=24, fps=30) as r:
        info = r.gl
    assert info["renderer"] and info["vendor"] and info["version"]
    assert info["software"] == any(s in info["renderer"].lower() for s in gl.SOFTWARE_RENDERERS)


def test_choose_backend_still_works_after_mujoco_was_imported():
    """mujoco binds its GLContext at import; choose_backend() rebinds it if it runs too late."""
    import subprocess
    import sys

    code = (
        "import mujoco\n"
        "from simreel.sim import gl\n"
        "print(gl.choose_backend())\n"
        "m = mujoco.MjModel.from_xml_string(\"<mujoco><worldbody><light pos='0 0 2'/>"
        "<geom type='box' size='.5 .5 .5'/></worldbody></mujoco>\")\n"
        "d = mujoco.MjData(m); mujoco.mj_forward(m, d)\n"
        "with mujoco.Renderer(m, 24, 32) as r:\n"
        "    r.update_scene(d); print(r.render().mean() > 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    env["SIMREEL_LOG_LEVEL"] = "warning"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split()
    assert lines[-1] == "True" and lines[-2] in gl.PROBE_ORDER
