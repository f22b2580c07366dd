"""A new run from the form: the request as JSON, or multipart with an uploaded robot.

The request is validated by the contract itself (msgspec, the same Struct the simulator decodes), so
the page shows the contract's own message and field path (`Expected int <= 4096 - at $.render.width`)
next to the field. An uploaded robot (an MJCF with its assets, a folder, or a .zip) is streamed to disk
within the per-file and per-scene caps, goes through the simulator's sandboxed loader, and then the
same content-addressed path as the CLI's: its files into the scene-file store, named in the request.
"""
from __future__ import annotations

import json
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from simreel.sim import mjcf_files
from simreel.sim.errors import SceneError, SceneForbidden

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


@dataclass
class Upload:
    """A robot uploaded with the form: its files on disk, by their path in the scene's tree."""

    dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    scene_path: str | None = None  # the MJCF to run, when the form names it or a single file was sent

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def entry(self) -> str:
        """The scene to run: the one named, else the only MJCF at the top of the upload."""
        if self.scene_path:
            name = tree_path(self.scene_path, "scene_path")
            if name not in self.files:
                raise FieldError(f"{name!r} is not in the upload", "scene_path")
            return name
        xmls = [p for p in self.files if p.lower().endswith(".xml")]
        if not xmls:
            raise FieldError("the upload holds no MJCF (.xml) file", "scene_file")
        top = min(p.count("/") for p in xmls)
        shallow = sorted(p for p in xmls if p.count("/") == top)
        if len(shallow) > 1:
            raise FieldError(f"the upload holds {len(shallow)} MJCF files at its top ({', '.join(shallow[:4])}"
                             f"{'…' if len(shallow) > 4 else ''}): name the scene", "scene_path")
        return shallow[0]


def tree_path(name: str, what: str) -> str:
    """A file's path inside an uploaded tree: relative, no '..' above the tree, no NUL."""
    try:
        clean = mjcf_files.join(mjcf_files.clean(name, what))
    except SceneForbidden as e:
        raise FieldError(str(e), what) from None
    if clean == "." or clean.startswith(".."):
        raise FieldError(f"{what} {name!r} is outside the upload", what)
    return clean


class _Writer:
    """Writes uploaded files under one directory, within the per-file cap and the scene's budget."""

    def __init__(self, upload: Upload, budget: list[int], max_file_bytes: int) -> None:
        self.upload, self.budget, self.max_file_bytes = upload, budget, max_file_bytes

    def _dest(self, path: str) -> Path:
        if path in self.upload.files:
            raise FieldError(f"{path!r} is uploaded twice", "scene_file")
        dest = self.upload.dir / "tree" / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.upload.files[path] = dest
        return dest

    def _count(self, path: str, n: int, total: int) -> None:
        self.budget[0] -= n
        if self.budget[0] < 0:
            raise TooLarge()
        if total > self.max_file_bytes:
            raise FieldError(f"{path} is over the per-file cap of {self.max_file_bytes} bytes "
                             "(SIMREEL_MAX_SCENE_FILE_BYTES raises it)", "scene_file")

    async def part(self, part, path: str) -> Path:
        dest, total = self._dest(path), 0
        with open(dest, "wb") as f:
            while chunk := await part.read_chunk(1 << 16):
                total += len(chunk)
                self._count(path, len(chunk), total)
                f.write(chunk)
        return dest

    def zip(self, archive: Path) -> None:
        """Unpack a .zip: regular files only, each path checked, sizes counted as they are written (a
        zip's own size fields are not trusted)."""
        try:
            z = zipfile.ZipFile(archive)
        except zipfile.BadZipFile:
            raise FieldError("the .zip cannot be read", "scene_zip") from None
        with z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise FieldError(f"{info.filename!r}: symlinks in the .zip are refused", "scene_zip")
                path = tree_path(info.filename, "scene_zip")
                dest, total = self._dest(path), 0
                with z.open(info) as src, open(dest, "wb") as f:
                    while chunk := src.read(1 << 16):
                        total += len(chunk)
                        self._count(path, len(chunk), total)
                        f.write(chunk)


async def read_submission(request: web.Request, max_bytes: int, *, max_scene_bytes: int,
                          max_file_bytes: int) -> tuple[dict[str, Any], Upload | None]:
    """JSON body (up to `max_bytes`), or multipart: `request` (JSON) and a robot as `scene_file` (an
    MJCF) with `assets` beside it, a folder (`tree` parts named by their relative paths), or a
    `scene_zip`; `scene_path` names the MJCF to run inside a folder or zip. Files are streamed to disk
    within the per-file and per-scene caps."""
    if request.content_type == "application/json":
        if request.content_length is not None and request.content_length > max_bytes:
            raise TooLarge()
        try:
            raw = await request.json()
        except web.HTTPRequestEntityTooLarge:
            raise TooLarge() from None
        except ValueError:
            raise FieldError("body is not JSON") from None
        if not isinstance(raw, dict):
            raise FieldError("the request must be a JSON object")
        return raw, None
    if request.content_type != "multipart/form-data":
        raise FieldError("send application/json or multipart/form-data")
    if request.content_length is not None and request.content_length > max_scene_bytes + max_bytes:
        raise TooLarge()
    budget = [max_scene_bytes]
    upload = Upload(Path(tempfile.mkdtemp(prefix="simreel-upload-")))
    writer = _Writer(upload, budget, max_file_bytes)
    raw = None
    try:
        reader = await request.multipart()
        async for part in reader:
            if part.name == "request":
                try:
                    raw = json.loads(await read_part(part, [max_bytes]))
                except ValueError:
                    raise FieldError("request part is not JSON") from None
            elif part.name == "scene_path":
                upload.scene_path = (await read_part(part, [4096])).decode("utf-8", "replace").strip() or None
            elif part.name == "scene_file" and part.filename:
                name = tree_path(Path(part.filename).name, "scene_file")
                await writer.part(part, name)
                upload.scene_path = upload.scene_path or name
            elif part.name in ("assets", "tree") and part.filename:
                name = Path(part.filename).name if part.name == "assets" else part.filename
                await writer.part(part, tree_path(name, part.name))
            elif part.name == "scene_zip" and part.filename:
                archive = upload.dir / "upload.zip"
                with open(archive, "wb") as f:
                    while chunk := await part.read_chunk(1 << 16):
                        budget[0] -= len(chunk)
                        if budget[0] < 0:
                            raise TooLarge()
                        f.write(chunk)
                budget[0] = max_scene_bytes
                writer.zip(archive)
                archive.unlink()
        if raw is None:
            raise FieldError("missing the request part")
        if not isinstance(raw, dict):
            raise FieldError("the request must be a JSON object")
    except BaseException:
        upload.close()
        raise
    if not upload.files:
        upload.close()
        return raw, None
    return raw, upload


def referenced(entry: str, files: dict[str, Path]) -> dict[str, Path]:
    """The uploaded files the scene needs (a folder or .zip often holds more)."""
    res = mjcf_files.resolve(entry, lambda p: p in files, lambda p: files[p].read_bytes())
    return {p: files[p] for p in res.files if p in files}


def check_scene(entry: str, files: dict[str, Path], width: int, height: int) -> str | None:
    """The simulator's own loader on the uploaded tree: a broken file or a forbidden reference is
    shown next to the upload instead of as a failed run later."""
    from simreel.sim.loader import load_tree

    try:
        load_tree(entry, files, width=width, height=height)
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
