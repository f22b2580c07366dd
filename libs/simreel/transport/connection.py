"""The NATS connection: credentials and TLS, reconnecting forever once connected, and telling
waiters when the connection is back.

A NATS restart must pause the services, not kill them; a wrong URL or a refused login must be a
clear error at start instead of a hang.
"""
from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any, Awaitable, Callable

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from simreel.runtime import lean_imports
from simreel.runtime import log as logs
from simreel.runtime.cancel import raise_if_cancel_lost
from simreel.runtime.config import NatsSettings

log = logs.get("simreel.bus")

# JetStream is there but cannot answer yet (restart, leader election): wait, do not give up. (No
# responders at all means a server without JetStream: that is an error to report, not to wait out.)
JS_UNAVAILABLE = (nats.errors.TimeoutError, nats.errors.ConnectionReconnectingError,
                  nats.js.errors.ServiceUnavailableError)


def tls_client_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """The TLS context a client presents to NATS: trust in `tls_ca`, and the client certificate when
    the server asks for one; None when the settings name neither (plain connection)."""
    if not (settings.tls_ca or settings.tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=settings.tls_ca)
    if settings.tls_cert:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    return ctx


async def connect(settings: NatsSettings, *, name: str = "simreel", connect_timeout: float = 5.0,
                  first_connect_s: float | None = None,
                  on_reconnected: Callable[[], None] | None = None) -> nats.NATS:
    """Connect with reconnects forever once connected: a NATS restart must pause the services, not
    kill them. The first connection has a deadline (SIMREEL_NATS_CONNECT_TIMEOUT_S, default 30 s), so
    a wrong URL is a clear error instead of a hang."""
    servers = [u.strip() for u in settings.url.split(",")]
    if any(u.startswith(("ws://", "wss://")) for u in servers):
        lean_imports.websockets()
    opts: dict[str, Any] = dict(
        servers=servers,
        name=name,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        drain_timeout=5,
    )
    if settings.creds:
        opts["user_credentials"] = settings.creds
    if settings.user:
        opts["user"] = settings.user
        opts["password"] = settings.password or ""
    if settings.token:
        opts["token"] = settings.token
    tls = tls_client_context(settings)
    if tls is not None:
        opts["tls"] = tls

    nc = nats.NATS()

    async def _err(e: Exception) -> None:
        log.warning("nats_error", error=str(e))

    async def _disc() -> None:
        if not (nc.is_closed or nc.is_draining):  # our own close is not news
            log.warning("nats_disconnected")

    async def _recon() -> None:
        log.info("nats_reconnected")
        if on_reconnected is not None:
            on_reconnected()

    opts.update(error_cb=_err, disconnected_cb=_disc, reconnected_cb=_recon)
    if first_connect_s is None:
        first_connect_s = settings.connect_timeout_s
    try:
        await asyncio.wait_for(nc.connect(**opts), first_connect_s)
    except (asyncio.TimeoutError, OSError, nats.errors.NoServersError) as e:
        with contextlib.suppress(Exception):
            await nc.close()
        where = ", ".join(s.split("@")[-1] for s in opts["servers"])
        raise ConnectionError(f"cannot reach NATS at {where} within {first_connect_s:.0f}s "
                              f"({type(e).__name__}); check SIMREEL_NATS_URL / --nats") from None
    return nc


class Reconnections:
    """Futures that resolve when the connection next comes back after a drop: a frame publisher
    waiting on an ack that went down with the old socket stops waiting at once."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def next(self) -> asyncio.Future:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)  # cancelled waiters do not pile up
        return waiter


async def listen(nc: nats.NATS, subject: str, callback: Callable[[str, bytes], Awaitable[None]]) -> Any:
    """Every message published on `subject` from now on, as (subject, data), without replay or
    acks (a live recorder's controls); the subscription is returned for `unsubscribe()`."""
    async def _on(msg: Msg) -> None:
        await callback(msg.subject, msg.data)

    return await nc.subscribe(subject, cb=_on)


async def next_message(sub) -> Msg:
    """The subscription's next message, however long that takes; CancelledError if the wait's
    cancellation was lost on the way (see simreel.runtime.cancel)."""
    while True:
        try:
            m = await sub.next_msg(timeout=3600)
        except nats.errors.TimeoutError:
            continue
        raise_if_cancel_lost()
        return m
