"""A tiny service that reacts to new videos: prints each VideoAvailable as it is encoded and each
ArtifactStored (video, telemetry, report…) with its URL as it is stored.

    SIMREEL_NATS_URL=nats://127.0.0.1:4222 python examples/print_video_urls.py [--from-start]

Both streams are followed at once; Ctrl-C stops it cleanly. This is what another system (a
dashboard, a Slack bot, an experiment tracker) would run to pick up simreel's videos.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from simreel.client import Client


async def print_videos(client: Client, from_start: bool) -> None:
    async for v in client.videos(from_start=from_start):
        episode = "all" if v.episode is None else v.episode
        print(f"encoded  {v.run_id} episode {episode}: {v.format} {v.frames} frames "
              f"{v.width}x{v.height}@{v.fps:g} ({v.bytes} bytes, encode {v.encode_ms:.0f} ms)", flush=True)


async def print_stored(client: Client, from_start: bool) -> None:
    async for a in client.stored(from_start=from_start):
        episode = "" if a.episode is None else f" episode {a.episode}"
        print(f"stored   {a.run_id}{episode}: {a.kind} {a.url}", flush=True)


async def main(from_start: bool, url: str | None) -> None:
    client = await Client.connect(url=url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(print_videos(client, from_start)),
             asyncio.create_task(print_stored(client, from_start))]
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-start", action="store_true", help="replay every past event first")
    p.add_argument("--nats", default=None, help="NATS URL (default: SIMREEL_NATS_URL)")
    a = p.parse_args()
    asyncio.run(main(a.from_start, a.nats))
