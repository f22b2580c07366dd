"""No secret in any log or output when things fail.

NATS with user/password, S3 with keys, everything configured through the environment. Each service is
made to fail on a deliberate error — the simulator on a policy that raises, the encoder on a message
it cannot decode, the uploader on S3 credentials the server stops accepting (rotated after it started),
retention on a retention policy that does not parse — and the CLI on a failed run. Then every log file and every captured output is
searched for the secret values. Failures are where tracebacks (and their frames' locals: a signed
request's Authorization header, a client holding its keys) used to be logged.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import nats
import pytest

from simreel.runtime.config import NatsSettings

from tests.support.s3server import S3Server

from tests.support.eventlog import submit, wait_result
from tests.support.runs import request
from tests.support.waits import until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BOOM = "entrypoint:tests.support.policies:boom"


@pytest.fixture
def s3_own(tmp_path):
    """An S3 server of this test alone: it rotates the server's secret key."""
    with S3Server(tmp_path / "weed") as server:
        yield server


async def test_no_secret_in_any_log_or_output_when_each_service_fails(make_stack, s3_own, tmp_path):
    s3server = s3_own
    user, password = "simreel-svc", "pw-" + secrets.token_hex(12)
    old_secret = s3server.secret_key
    env = {**s3server.env("rel-secrets"), "SIMREEL_NATS_USER": user, "SIMREEL_NATS_PASSWORD": password,
           "SIMREEL_POLICY_ALLOWLIST": BOOM, "SIMREEL_MAX_DELIVER": "2"}
    stack = make_stack(env=env, services=(), nats_args=["--user", user, "--pass", password])
    base = stack.service_env()
    stack.start_service("simulator", base)
    stack.start_service("encoder", base)
    uploader = stack.start_service("uploader", base)
    stack.start_service("retention", {**base, "SIMREEL_RETENTION_POLICIES": "{not json"})
    good = NatsSettings(url=stack.url, user=user, password=password)
    # Both passed their start checks (one HEAD of the bucket each) before the key changes.
    await until(lambda: "service_started" in (stack.log_dir / "uploader-0.log").read_text(), timeout=60,
                what="the uploader to pass its start checks")
    await until(lambda: "service_crashed" in (stack.log_dir / "retention-0.log").read_text(), timeout=60,
                what="retention to stop on its retention policy")
    # The server's secret is rotated under the running uploader: its key is rejected from now on.
    s3server.secret_key = "rotated-" + secrets.token_hex(16)
    s3server.restart()

    # simulator: a policy that raises.
    await submit(good, request("secrets-boom", policy=BOOM))
    failed = await wait_result(good, "secrets-boom", timeout=90)
    assert failed.status == "failed" and "deliberate policy failure" in failed.error

    # uploader: the server rejects its credentials.
    await submit(good, request("secrets-store"))
    stored = await wait_result(good, "secrets-store", timeout=120)
    assert stored.status == "failed" and stored.state.failed_in == "uploader", (stored.status, stored.error)
    assert uploader.poll() is None  # a rejected upload fails the run, not the service

    # encoder: a message on its work subject that does not decode.
    nc = await nats.connect(stack.url, user=user, password=password)
    try:
        await nc.jetstream().publish("simreel.evt.sim.started.secrets-garbage", b"\x00 not an event")
    finally:
        await nc.close()

    # The CLI, configured only through the environment, on a run that fails.
    cli_env = {**os.environ, **base, "SIMREEL_NATS_URL": stack.url}
    cli = subprocess.run([sys.executable, "-m", "simreel.cli", "submit", "cartpole", "--policy", BOOM, "--wait",
                          "--duration", "0.2", "--width", "64", "--height", "48"],
                         capture_output=True, text=True, timeout=120, env=cli_env, cwd=tmp_path)
    assert cli.returncode == 1 and "deliberate policy failure" in cli.stderr, cli.stderr[-3000:]
    cli_json = subprocess.run([sys.executable, "-m", "simreel.cli", "runs", "--json"], capture_output=True,
                              text=True, timeout=60, env=cli_env, cwd=tmp_path)
    assert cli_json.returncode == 0 and json.loads(cli_json.stdout), cli_json.stderr[-3000:]

    def logs() -> dict[str, str]:
        return {p.name: p.read_text(errors="replace") for p in stack.log_dir.glob("*.log")}

    await until(lambda: "dead_lettered" in logs().get("encoder-0.log", ""), timeout=60,
                what="the encoder's dead letter in its log")
    stack.stop()
    texts = logs()
    assert {"simulator-0.log", "encoder-0.log", "uploader-0.log", "retention-0.log", "nats.log"} <= set(texts)
    assert "sim_failed" in texts["simulator-0.log"] and "deliberate policy failure" in texts["simulator-0.log"]
    assert "SignatureDoesNotMatch" in texts["uploader-0.log"] or "AccessDenied" in texts["uploader-0.log"], \
        texts["uploader-0.log"][-3000:]
    outputs = {"cli submit stdout": cli.stdout, "cli submit stderr": cli.stderr,
               "cli runs stdout": cli_json.stdout, "cli runs stderr": cli_json.stderr, **texts}
    for secret, what in ((password, "NATS password"), (old_secret, "S3 secret key"),
                         (s3server.access_key, "S3 access key"), (s3server.secret_key, "the rotated S3 secret key"),
                         ("X-Amz-Signature", "presigned URL signature"), ("Signature=", "request signature")):
        leaks = [name for name, text in outputs.items() if secret in text]
        assert not leaks, f"{what} appears in {leaks}"
    assert not [name for name, text in outputs.items() if '"locals"' in text], "frame locals in a log"
