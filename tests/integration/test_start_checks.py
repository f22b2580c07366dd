"""Settings that can never work are refused at start, naming the setting, before any work is done.

`simreel run` / `serve` against a real S3 server (SeaweedFS) and real nats-server processes: a bucket
name S3 would refuse, credentials it rejects, an endpoint where nothing listens, a NATS URL with a
typo, a TLS file that is not there, a store directory nobody can write. And a permanent store error
during a run fails it at once instead of being retried as if it were transient.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simreel.contract import events as ev
from simreel.stack.embedded import free_port
from simreel.store import S3Store, StoreRejectedError
from tests.support.s3server import S3Server
from tests.support.uploads import deliver, staged_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SIMREEL = [sys.executable, "-m", "simreel.cli"]
RUN = [*SIMREEL, "run", "cartpole", "--duration", "0.2", "--width", "64", "--height", "48"]


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


def simreel(args: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}
    t0 = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**base, **env}, cwd=tmp_path)
    return proc, time.monotonic() - t0


def refusal(proc: subprocess.CompletedProcess) -> str:
    """The one line the CLI ends with; nothing was started (no stack message), no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "starting the embedded stack" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("simreel: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_an_invalid_bucket_name_is_refused_at_once(s3, tmp_path):
    proc, took = simreel(RUN, tmp_path, **{**s3.env("x")})
    line = refusal(proc)
    assert line.startswith("simreel: SIMREEL_S3_BUCKET='x' is not a valid bucket name"), line
    assert took < 15


def test_rejected_s3_credentials_are_refused_at_once_and_not_shown(s3, tmp_path):
    wrong = "wrong-secret-0123456789"
    proc, took = simreel(RUN, tmp_path, **{**s3.env("start-checks"), "SIMREEL_S3_SECRET_KEY": wrong})
    line = refusal(proc)
    assert f"S3 at {s3.endpoint} refused the credentials" in line and "SIMREEL_S3_SECRET_KEY" in line, line
    assert wrong not in proc.stderr + proc.stdout and s3.access_key not in proc.stderr + proc.stdout
    assert took < 15


def test_an_s3_endpoint_where_nothing_listens_is_waited_for_then_refused(tmp_path):
    port = free_port()
    proc, took = simreel(RUN, tmp_path, SIMREEL_S3_ENDPOINT=f"http://127.0.0.1:{port}", SIMREEL_S3_ACCESS_KEY="k",
                         SIMREEL_S3_SECRET_KEY="s", SIMREEL_S3_CONNECT_TIMEOUT_S="2")
    line = refusal(proc)
    assert line == (f"simreel: cannot reach S3 at 127.0.0.1:{port} within 2s (connection refused): "
                    "check SIMREEL_S3_ENDPOINT"), line
    assert f"waiting for S3 at 127.0.0.1:{port} (connection refused), retry 1" in proc.stderr
    assert took < 15


@pytest.mark.parametrize("url", ["nats//127.0.0.1:4222", "http://127.0.0.1:4222", "nats://127.0.0.1:42x22"])
def test_a_nats_url_typo_is_refused_naming_the_setting(tmp_path, url):
    proc, took = simreel(RUN, tmp_path, SIMREEL_NATS_URL=url)
    line = refusal(proc)
    assert line.startswith(f"simreel: --nats / SIMREEL_NATS_URL: '{url}' is not a NATS URL"), line
    assert took < 15


def test_a_missing_tls_file_is_refused(tmp_path):
    proc, _ = simreel(RUN, tmp_path, SIMREEL_NATS_URL="nats://127.0.0.1:4222",
                      SIMREEL_NATS_TLS_CA=str(tmp_path / "no-ca.pem"))
    assert refusal(proc) == f"simreel: SIMREEL_NATS_TLS_CA={tmp_path / 'no-ca.pem'}: no such file"


def test_a_store_directory_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "out"
    proc, _ = simreel([*RUN, "--out", str(out)], tmp_path)
    line = refusal(proc)
    assert line.startswith(f"simreel: --out / SIMREEL_STORE_DIR={out}: cannot write there"), line


def test_simreel_serve_refuses_naming_the_setting(s3, tmp_path):
    proc, took = simreel([*SIMREEL, "serve", "uploader", "--nats", "nats://127.0.0.1:1"], tmp_path,
                         SIMREEL_LOG_FORMAT="json", **s3.env("no_such..bucket"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert '"event": "settings_invalid"' in proc.stderr and "SIMREEL_S3_BUCKET='no_such..bucket'" in proc.stderr
    assert took < 15


async def test_a_permanent_store_error_fails_the_upload_at_once(s3, tmp_path):
    store = S3Store(s3.endpoint, s3.access_key, "not-the-secret", "start-checks", retries=4, backoff_s=1.0)
    staging, video = await staged_video(tmp_path)
    t0 = time.monotonic()
    out = await deliver(store, staging, video, attempt=1)
    assert time.monotonic() - t0 < 5 and store.retried == 0  # no backoff: another try gets the same answer
    (failed,) = out
    assert isinstance(failed, ev.StoreFailed) and failed.run_id == "redelivered"
    assert "SignatureDoesNotMatch" in failed.message or "AccessDenied" in failed.message, failed.message
    with pytest.raises(StoreRejectedError):
        await store.check()
    await store.close()


async def test_an_s3_endpoint_that_accepts_but_never_answers_is_refused_within_the_deadline():
    import socket

    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host, port = silent.getsockname()
        store = S3Store(f"{host}:{port}", "k", "s", "start-checks")
        t0 = time.monotonic()
        with pytest.raises(StoreRejectedError, match=rf"cannot reach S3 at 127.0.0.1:{port} within 2s \(timed out\)"):
            await store.check(deadline_s=2)
        assert time.monotonic() - t0 < 6
        await store.close()
