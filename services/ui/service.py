"""Wiring of the ui: follow the whole event log into the read model, serve HTTP, publish what users ask.

Settings (environment): SIMREEL_UI_HOST (127.0.0.1), SIMREEL_UI_PORT (8787), SIMREEL_UI_TOKEN (required
when the host is not loopback), SIMREEL_UI_MAX_UPLOAD_BYTES (16 MiB). Artifacts are read through the
configured store (SIMREEL_STORE ...), like every other service.
"""
from __future__ import annotations

import asyncio
import os
from typing import Mapping

from aiohttp import web

from simreel.runtime import log as logs
from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.runtime.config import Settings, UiConfig
from simreel.store.base import ArtifactStore
from simreel.transport.scenefiles import SceneFileStore
from simreel.store.settings import store_from_env

from .app import Ui
from .live import Live
from .preview import Previews

NAME = "ui"


def config_from_env(env: Mapping[str, str] = os.environ, *, host: str | None = None,
                    port: int | None = None) -> UiConfig:
    return UiConfig.from_env(env, host=host, port=port)


async def follow_log(bus: Bus, live: Live) -> None:
    """Replay every event, then keep applying new ones as they are stored (no polling)."""
    announced = False
    async for e in bus.follow(subjects.ALL_EVENTS, caught_up=live.caught_up):
        live.apply(e)
        if not announced and live.caught_up.is_set():
            announced = True
            live.replayed()


async def run(bus: Bus, settings: Settings, stop: asyncio.Event, config: UiConfig | None = None,
              store: ArtifactStore | None = None) -> None:
    """`config` and `store` default to the environment's; `simreel ui` passes its flags' values."""
    log = logs.get(NAME)
    config = config or config_from_env()
    live = Live()
    store = store or store_from_env()
    previews = Previews(live, bus.watch_frames)
    ui = Ui(live, store, bus.publish, config, previews=previews, scene_files=SceneFileStore(bus))
    follower = asyncio.create_task(follow_log(bus, live))
    runner = web.AppRunner(ui.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else config.port
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{host}:{port}/"
    log.info("ui_listening", url=url, auth="token" if config.token else "loopback")
    print(f"simreel ui: {url}", flush=True)
    try:
        done, _ = await asyncio.wait({follower, asyncio.ensure_future(stop.wait())},
                                     return_when=asyncio.FIRST_COMPLETED)
        if follower in done:
            follower.result()  # the log follower died: fail loudly, the supervisor restarts us
    finally:
        follower.cancel()
        await previews.close()
        await runner.cleanup()
        await asyncio.gather(follower, return_exceptions=True)
        await store.close()
