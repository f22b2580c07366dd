"""Every SIMREEL_* variable is read in simreel.runtime.config and nowhere else: one name, default and error per
setting. Writing one for a child process (env["SIMREEL_X"] = ..., env.setdefault) is not reading it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from simreel.runtime.config import StoreSettings, UiConfig, nats_url

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "libs" / "simreel" / "runtime" / "config.py"
READERS = {"get", "getenv", "text", "integer", "number", "size", "boolean", "pop"}


def _names_variable(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("SIMREEL_")
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        return isinstance(first, ast.Constant) and str(first.value).startswith("SIMREEL_")
    return False


def _reads(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in READERS and any(_names_variable(a) for a in node.args):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _names_variable(node.slice):
            lines.append(node.lineno)
    return lines


def test_simreel_variables_are_read_only_in_config():
    found = []
    for path in sorted([*(ROOT / "libs").rglob("*.py"), *(ROOT / "services").rglob("*.py")]):
        if path == HOME:
            continue
        found += [f"{path.relative_to(ROOT)}:{line}" for line in _reads(ast.parse(path.read_text()))]
    assert found == []


def test_the_check_sees_a_read():
    assert _reads(ast.parse('import os\nos.environ.get("SIMREEL_NATS_URL")\nenv[f"SIMREEL_{n}_NICE"]\n')) == [2, 3]
    assert _reads(ast.parse('env["SIMREEL_X"] = "1"\nenv.setdefault("SIMREEL_Y", "2")\n')) == []


def test_settings_read_from_a_given_environment():
    env = {"SIMREEL_NATS_URL": " nats://a:1 ", "SIMREEL_UI_PORT": "9000", "SIMREEL_S3_ENDPOINT": "s3.local:9000",
           "SIMREEL_S3_SECURE": "no", "SIMREEL_KEY_PREFIX": "p"}
    assert nats_url(env) == "nats://a:1" and nats_url({}) is None
    assert UiConfig.from_env(env).port == 9000
    st = StoreSettings.from_env(env)
    assert (st.kind, st.kind_given, st.s3_secure, st.key_prefix) == ("s3", False, False, "p")
    assert StoreSettings.from_env({"SIMREEL_S3_SECURE": "maybe"}).kind == "local"  # parsed only for S3
    with pytest.raises(ValueError, match="SIMREEL_S3_SECURE"):
        StoreSettings.from_env({"SIMREEL_STORE": "s3", "SIMREEL_S3_SECURE": "maybe"})
