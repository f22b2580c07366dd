"""A real stack with the ui as one of its processes, and a small HTTP client for the ui's API."""
from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from simreel.stack.embedded import SERVICES, Stack, free_port

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHROMIUM = "/usr/bin/chromium"


class UiClient:
    """Cookie-keeping HTTP client: the first GET gets the CSRF cookie, writes echo it."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if method != "GET":
            hdrs["X-CSRF-Token"] = self.csrf()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body)
        return status, json.loads(data) if data else None

    def csrf(self) -> str:
        for c in self.jar:
            if c.name == "simreel_csrf":
                return c.value
        self.request("GET", "/")
        return next(c.value for c in self.jar if c.name == "simreel_csrf")

    def sse(self, query: str = "", timeout: float = 120) -> Iterator[tuple[str, Any]]:
        """Server-sent events as (kind, data), as a browser's EventSource gets them."""
        with self.opener.open(self.base + "/api/events" + query, timeout=timeout) as r:
            kind = None
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind:
                    yield kind, json.loads(line[6:])
                    kind = None


def wait_http(url: str, proc, logs=lambda: "", timeout: float = 60) -> None:
    """Until the ui answers (or the process serving it died: then fail with its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ui exited with {proc.returncode}:\n{logs()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1):
                return
        with contextlib.suppress(Exception):
            proc.wait(timeout=0.2)
    raise TimeoutError(f"ui did not answer at {url}:\n{logs()[-3000:]}")


@contextlib.contextmanager
def ui_stack(base: Path, **env_extra: str) -> Iterator[tuple[Stack, str]]:
    port = free_port()
    env = dict(os.environ)
    env.update({"SIMREEL_FRAME_IDLE_TIMEOUT_S": "30", "SIMREEL_UI_PORT": str(port), "SIMREEL_UI_HOST": "127.0.0.1",
                **env_extra})
    stack = Stack(data_dir=base / "data", out_dir=base / "out", env=env, services=[*SERVICES, "ui"])
    stack.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/api/runs", stack.procs["ui"][0], stack.logs)
        yield stack, url
    finally:
        stack.stop()
        if os.environ.get("SIMREEL_TEST_SHOW_LOGS"):
            print(stack.logs())


@contextlib.contextmanager
def chromium(profile: Path, *, height: int = 860) -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (never Playwright's own browser download), with a
    fresh profile: a browser context to open pages in, closed on exit."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(f"{CHROMIUM} is missing: install Debian's chromium (README's apt-get line; .ci/run does)")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=FLAGS, headless=True,
                                                   viewport={"width": 1280, "height": height})
        try:
            yield ctx
        finally:
            ctx.close()
