"""simreel's logging: stdlib loggers under `simreel`, secrets redacted, tracebacks without locals."""
from __future__ import annotations

import logging

import pytest

from simreel.runtime import log as logs


@pytest.fixture
def own_process(library_state, capsys):
    """setup() as the CLI and services call it (to stderr)."""
    yield capsys


def _fail_with_a_secret_in_scope(log) -> None:
    password = "hunter2-in-a-local"  # noqa: F841 - what a frame's locals would show
    try:
        raise RuntimeError("upload failed")
    except RuntimeError:
        log.exception("handler_failed", token="also-secret")


@pytest.mark.parametrize("json", [True, False], ids=["json", "console"])
def test_tracebacks_are_logged_without_locals(own_process, json):
    logs.setup("info", json=json)
    _fail_with_a_secret_in_scope(logs.get("encoder", run_id="r1"))
    text = own_process.readouterr().err
    assert "handler_failed" in text and "upload failed" in text and "_fail_with_a_secret_in_scope" in text
    assert "hunter2-in-a-local" not in text and "also-secret" not in text and "locals" not in text


def test_in_a_library_process_lines_go_to_logging_only(library_state, caplog, capsys):
    caplog.set_level(logging.INFO, logger="simreel")
    logs.get("simreel.embedded").info("nats_started", url="nats://127.0.0.1:1", password="pw")
    logs.quiet("simreel.gym").info("dropped_below_warning")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # caplog's handler got it; nothing printed by simreel
    (record,) = [r for r in caplog.records if r.name.startswith("simreel")]
    assert record.name == "simreel.embedded" and record.levelno == logging.INFO
    assert record.getMessage() == "event='nats_started' url='nats://127.0.0.1:1' password='***'"
    assert record.simreel_fields["url"] == "nats://127.0.0.1:1"
