"""A new run from the form: the request as JSON, or multipart with an uploaded MJCF and its assets.

The request is validated by the contract itself (msgspec, the same Struct the simulator decodes), so
the page shows the contract's own message and field path (`Expected int <= 4096 - at $.render.width`)
next to the field; an uploaded MJCF also goes through the simulator's sandboxed loader before it is
published. Uploads are counted against a size cap while they stream in.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from simreel import events as ev

# A field path in msgspec's messages: "Expected `int` <= 4096 - at `$.render.width`".
_FIELD = re.compile(r"at `\$\.([^`]+)`")


def field_of(message: str) -> str | None:
    """The request field a validation message is about (`render.width`), for the form to mark."""
    m = _FIELD.search(message)
    return m.group(1) if m else None


class FieldError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooLarge(Exception):
    pass


async def read_part(part, budget: list[int]) -> bytes:
    """A multipart part, counted against the upload budget (aiohttp does not cap streamed parts)."""
    chunks = []
    while chunk := await part.read_chunk(1 << 16):
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def read_submission(request: web.Request, max_bytes: int) -> tuple[dict[str, Any], dict[str, bytes], bool]:
    """JSON body, or multipart: `request` (JSON), `scene_file` (MJCF), `assets` (files it references).
    Returns the request, the uploaded assets, and whether the scene came as an uploaded file."""
    assets: dict[str, bytes] = {}
    uploaded = False
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge()
    budget = [max_bytes]
    if request.content_type == "application/json":
        try:
            raw = await request.json()
        except web.HTTPRequestEntityTooLarge:
            raise TooLarge() from None
        except ValueError:
            raise FieldError("body is not JSON") from None
    elif request.content_type == "multipart/form-data":
        raw, scene_text = None, None
        reader = await request.multipart()
        async for part in reader:
            if part.name == "request":
                try:
                    raw = json.loads(await read_part(part, budget))
                except ValueError:
                    raise FieldError("request part is not JSON") from None
            elif part.name == "scene_file" and part.filename:
                data = await read_part(part, budget)
                try:
                    scene_text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise FieldError("the scene file is not UTF-8 MJCF", "scene_file") from None
            elif part.name == "assets" and part.filename:
                name = Path(part.filename).name
                if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", name):
                    raise FieldError(f"asset name {name!r}: use letters, digits, . _ -", "assets")
                assets[name] = await read_part(part, budget)
        if raw is None:
            raise FieldError("missing the request part")
        if scene_text is not None:
            if not scene_text.lstrip().startswith("<"):
                raise FieldError("the scene file does not look like MJCF XML", "scene_file")
            raw["scene"] = scene_text
            uploaded = True
    else:
        raise FieldError("send application/json or multipart/form-data")
    if not isinstance(raw, dict):
        raise FieldError("the request must be a JSON object")
    return raw, assets, uploaded


def check_mjcf(req: ev.SimRequested) -> str | None:
    from simreel.sim.errors import SceneError, SceneForbidden
    from simreel.sim.loader import resolve_scene

    try:
        resolve_scene(req.scene, req.assets, (), req.render.width, req.render.height)
    except SceneError as e:
        return f"{'scene_forbidden' if isinstance(e, SceneForbidden) else 'scene_invalid'}: {e}"
    return None


def default_scenes() -> dict[str, list[str]]:
    """Builtin scenes, and the Gymnasium env ids this installation can make (when Gymnasium is here)."""
    from simreel.sim import scenes

    gym_ids: list[str] = []
    try:
        import gymnasium

        for env_id, spec in gymnasium.envs.registry.items():
            ep = spec.entry_point if isinstance(spec.entry_point, str) else ""
            if "mujoco" in ep or "classic_control" in ep:
                gym_ids.append(f"gymnasium:{env_id}")
    except Exception:  # noqa: BLE001 - Gymnasium is optional
        pass
    return {"builtin": sorted(scenes.BUILTIN), "gymnasium": sorted(gym_ids),
            "policies": ["zero", "random", "sine"]}
