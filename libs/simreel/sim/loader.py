"""Load MJCF into an `MjModel` without letting a request read files it was not given.

Requests carry inline MJCF from strangers (DESIGN §7). MuJoCo opens any `file=` it meets, relative or
absolute, so every file reference is checked here *before* compiling: absolute paths, URL-like schemes
and `..` are refused; each referenced file must be in the request's `assets` or under one of the
configured scene `roots` (read here and handed to MuJoCo through its in-memory VFS). MuJoCo therefore
never needs to open a file itself.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import mujoco

from simreel import log
from simreel.sim.errors import SceneError, SceneForbidden

__all__ = [
    "SceneError",
    "load_model",
    "load_path",
    "resolve_scene",
    "compiled_xml",
    "camera_names",
    "source_of",
    "ensure_offscreen",
    "scan_references",
    "FileRef",
]

_log = log.get(__name__)

# Attributes that name files: `file` (mesh, hfield, skin, texture, include, model, flexcomp) and the
# six cube-texture faces (`fileright`, `fileup`, ...).
_FILE_ATTR = re.compile(r"^file[a-z]*$")
_DIR_ATTRS = ("assetdir", "meshdir", "texturedir")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_MAX_INCLUDE_DEPTH = 16

# mj_saveLastXML works on MuJoCo's process-global "last loaded model"; loads and saves are serialized
# so that compiled_xml() can make its model the last one before saving.
_LOAD_LOCK = threading.Lock()
_SOURCES: "weakref.WeakKeyDictionary[mujoco.MjModel, tuple[str, dict[str, bytes]]]" = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class FileRef:
    """One file named by the MJCF: `<tag attr="value">`, to be looked up as one of `candidates`."""

    tag: str
    attr: str
    value: str
    candidates: tuple[str, ...]

    @property
    def is_include(self) -> bool:
        return self.tag == "include"


def _check_relative(value: str, what: str) -> str:
    """Return `value` as a normalized relative POSIX path, or refuse it."""
    if not value or value != value.strip():
        raise SceneForbidden(f"{what} {value!r}: empty or padded file names are refused")
    if "\x00" in value:
        raise SceneForbidden(f"{what} {value!r}: NUL byte in file name")
    posix = value.replace("\\", "/")
    if posix.startswith("/") or posix.startswith("~") or _SCHEME.match(posix):
        raise SceneForbidden(
            f"{what} {value!r}: absolute paths are refused; name the file relative to the scene and "
            "ship it in the request's assets (or place it under a configured scene root)"
        )
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise SceneForbidden(f"{what} {value!r}: '..' in file paths is refused (it could leave the scene root)")
    return str(PurePosixPath(*[p for p in parts if p != "."])) if parts else posix


def _parse(text: str | bytes, source: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        line, col = e.position
        msg = str(e).split(":")[0]
        where = "" if source == "<inline>" else f" in {source}"
        snippet = ""
        lines = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).splitlines()
        if 0 < line <= len(lines):
            snippet = f" (near {lines[line - 1].strip()[:60]!r})"
        raise SceneError(f"MJCF parse error{where} at line {line}, column {col + 1}: {msg}{snippet}") from None


def scan_references(root: ET.Element, dirs: dict[str, str] | None = None) -> tuple[list[FileRef], dict[str, str]]:
    """Every file an MJCF document names, with the compiler directories that apply to it.

    `dirs` carries compiler directories across includes (MuJoCo resolves files of included documents
    against the top-level model). Raises SceneError for refused paths.
    """
    dirs = dict(dirs or {})
    for comp in root.iter("compiler"):
        for attr in _DIR_ATTRS:
            if attr in comp.attrib:
                dirs[attr] = _check_relative(comp.attrib[attr], f"<compiler {attr}>")
    refs: list[FileRef] = []
    for el in root.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        for attr, value in el.attrib.items():
            if not _FILE_ATTR.match(attr):
                continue
            rel = _check_relative(value, f"<{tag} {attr}>")
            if tag in ("include", "model"):
                prefix = ""
            elif tag == "texture":
                prefix = dirs.get("texturedir", dirs.get("assetdir", ""))
            else:  # mesh, hfield, skin, flexcomp
                prefix = dirs.get("meshdir", dirs.get("assetdir", ""))
            cands = [str(PurePosixPath(prefix) / rel)] if prefix else []
            cands.append(rel)
            refs.append(FileRef(tag, attr, value, tuple(dict.fromkeys(cands))))
    return refs, dirs


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(r) for r in roots)


def _read_from_roots(ref: FileRef, search: Sequence[Path], allowed: Sequence[Path]) -> tuple[str, bytes] | None:
    for base in search:
        for cand in ref.candidates:
            p = (base / cand).resolve()
            if p.is_file() and _under(p, allowed):
                return cand, p.read_bytes()
    return None


def _gather_assets(
    xml: str, assets: Mapping[str, bytes], search: Sequence[Path], allowed: Sequence[Path]
) -> dict[str, bytes]:
    """Check every reference (recursively through includes); return the complete VFS dict."""
    vfs: dict[str, bytes] = {}
    for key, data in assets.items():
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise SceneError(f"asset {key!r}: expected bytes, got {type(data).__name__}")
        vfs[key] = bytes(data)
    normalized = {str(PurePosixPath(k.replace("\\", "/"))): k for k in vfs}

    def visit(text: str | bytes, source: str, dirs: dict[str, str], depth: int, seen: frozenset[str]) -> None:
        if depth > _MAX_INCLUDE_DEPTH:
            raise SceneError(f"includes nested deeper than {_MAX_INCLUDE_DEPTH} levels at {source}")
        refs, dirs = scan_references(_parse(text, source), dirs)
        for ref in refs:
            key = next((normalized[c] for c in ref.candidates if c in normalized), None)
            if key is None:
                found = _read_from_roots(ref, search, allowed)
                if found is None:
                    origin = "" if source == "<inline>" else f" (in {source})"
                    raise SceneError(
                        f"file {ref.value!r} referenced by <{ref.tag} {ref.attr}>{origin} not found: "
                        "ship it in the request's assets or place it under a configured scene root"
                    )
                key, data = found
                vfs[key] = data
                normalized[key] = key
            if ref.is_include:
                if key in seen:
                    raise SceneError(f"include cycle: {ref.value!r} includes itself")
                visit(vfs[key], ref.value, dirs, depth + 1, seen | {key})

    visit(xml, "<inline>", {}, 0, frozenset())
    return vfs


def collect_assets(path: Path | str, extra: Mapping[str, bytes] | None = None) -> tuple[str, dict[str, bytes]]:
    """A local MJCF file as a request ships it: its text and every file it references (includes,
    meshes, textures) read from its own directory, so `simreel run robot.xml` works from anywhere.
    Files outside that directory are refused, as the simulator would refuse them."""
    p = Path(path).resolve()
    text = p.read_text(encoding="utf-8")
    return text, _gather_assets(text, extra or {}, [p.parent], [p.parent])


_LINE = re.compile(r"line(?: number)?\s*=?\s*(\d+)", re.IGNORECASE)


def _humanize(err: Exception) -> str:
    """MuJoCo's compiler messages, as one line with the line number first."""
    text = str(err).strip()
    m = re.search(r"XML_ERROR_(\w+).*?Line number=(\d+)(?::\s*XMLElement name=(\S+))?", text, re.S)
    if m:
        what = m.group(1).lower().replace("_", " ")
        elem = f" '{m.group(3)}'" if m.group(3) else ""
        return f"MJCF parse error at line {m.group(2)}: {what}{elem}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = _LINE.search(text)
    head = re.sub(r"^(XML Error:\s*)?(Error:\s*)?", "", lines[0]) if lines else text
    rest = [re.sub(r",?\s*line\s*\d+", "", ln).strip(" ,") for ln in lines[1:]]
    rest = [r for r in rest if r]
    detail = f" ({'; '.join(rest)})" if rest else ""
    where = f" at line {line.group(1)}" if line else ""
    return f"MJCF error{where}: {head}{detail}"


def load_model(
    xml: str,
    assets: Mapping[str, bytes] | None = None,
    *,
    roots: Sequence[Path | str] = (),
    width: int = 0,
    height: int = 0,
) -> mujoco.MjModel:
    """Compile `xml` after checking its file references; grow the offscreen buffer to width×height.

    Files are looked up in `assets` first (keys are paths relative to the scene, e.g.
    `"meshes/arm.stl"`), then under each of `roots`.
    """
    root_paths = [Path(r).resolve() for r in roots]
    return _load(xml, assets or {}, search=root_paths, allowed=root_paths, width=width, height=height)


def _load(
    xml: str,
    assets: Mapping[str, bytes],
    *,
    search: Sequence[Path],
    allowed: Sequence[Path],
    width: int,
    height: int,
) -> mujoco.MjModel:
    if not isinstance(xml, str):
        raise SceneError(f"MJCF must be text, got {type(xml).__name__}")
    vfs = _gather_assets(xml, assets, search, allowed)
    with _LOAD_LOCK:
        try:
            model = mujoco.MjModel.from_xml_string(xml, vfs)
        except ValueError as e:
            raise SceneError(_humanize(e)) from None
    ensure_offscreen(model, width, height)
    _SOURCES[model] = (xml, vfs)
    return model


def ensure_offscreen(model: mujoco.MjModel, width: int, height: int) -> None:
    """mujoco.Renderer refuses sizes above <visual><global offwidth/offheight>; the buffer is sized
    from these model fields when the renderer's MjrContext is created, so raising them works."""
    g = model.vis.global_
    if width > g.offwidth or height > g.offheight:
        _log.debug("offscreen_buffer_raised", old=(g.offwidth, g.offheight), new=(width, height))
        g.offwidth = max(g.offwidth, int(width))
        g.offheight = max(g.offheight, int(height))


def load_path(
    path: Path | str,
    *,
    roots: Sequence[Path | str],
    assets: Mapping[str, bytes] | None = None,
    width: int = 0,
    height: int = 0,
) -> mujoco.MjModel:
    """Load a scene file that lies under one of `roots` (a relative path is tried under each root)."""
    allowed = [Path(r).resolve() for r in roots]
    if not allowed:
        raise SceneForbidden("scene files are disabled: no scene roots are configured")
    p = Path(path)
    if ".." in p.parts:
        raise SceneForbidden(f"scene path {str(path)!r}: '..' is refused")
    candidates = [p] if p.is_absolute() else [r / p for r in allowed]
    for cand in candidates:
        real = cand.resolve()
        if not _under(real, allowed):
            continue
        if real.is_file():
            text = real.read_text(encoding="utf-8")
            return _load(text, assets or {}, search=[real.parent], allowed=allowed, width=width, height=height)
    raise SceneForbidden(
        f"scene file {str(path)!r} not found under the scene roots ({', '.join(map(str, allowed))})"
    )


def resolve_scene(
    spec: str,
    assets: Mapping[str, bytes] | None = None,
    roots: Sequence[Path | str] = (),
    width: int = 0,
    height: int = 0,
) -> tuple[mujoco.MjModel, str]:
    """A request's `scene` field → (model, label): builtin name, inline MJCF, or `file:<path>`."""
    from simreel.sim import scenes  # local: scenes imports this module's error type only

    text = spec.lstrip()
    if text.startswith("<"):
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return load_model(spec, assets, roots=roots, width=width, height=height), f"inline:{digest}"
    if spec.startswith("file:"):
        rel = spec[len("file:"):]
        return load_path(rel, roots=roots, assets=assets, width=width, height=height), f"file:{rel}"
    if spec in scenes.BUILTIN:
        info = scenes.BUILTIN[spec]
        return _load(info.xml, assets or {}, search=[info.path.parent], allowed=[info.path.parent.resolve()],
                     width=width, height=height), spec
    raise SceneError(
        f"unknown scene {spec!r}: use a builtin ({', '.join(sorted(scenes.BUILTIN))}), "
        "inline MJCF starting with '<', or 'file:<path under a scene root>'"
    )


def compiled_xml(model: mujoco.MjModel) -> str:
    """The compiled scene as MJCF text (what gets stored as scene.xml), including runtime changes
    such as a raised offscreen buffer.

    mujoco 4 has no mj_saveXMLString; mj_saveLastXML writes MuJoCo's *last loaded* model to a file
    and refuses a model of another shape ("incompatible models in CopyBack"). So the model's source
    is reloaded first (under the load lock) to make it the last one.
    """
    with _LOAD_LOCK:
        source = _SOURCES.get(model)
        if source is not None:
            mujoco.MjModel.from_xml_string(*source)
        fd, tmp = tempfile.mkstemp(suffix=".xml", prefix="simreel-scene-")
        os.close(fd)
        try:
            mujoco.mj_saveLastXML(tmp, model)
            return Path(tmp).read_text(encoding="utf-8")
        except ValueError as e:
            raise SceneError(
                f"cannot save the compiled scene: {_humanize(e)} (load it with simreel.sim.loader)"
            ) from None
        finally:
            os.unlink(tmp)


def source_of(model: mujoco.MjModel) -> tuple[str, dict[str, bytes]] | None:
    """(MJCF text, files) a model was compiled from by this module, to rebuild it as an MjSpec."""
    return _SOURCES.get(model)


def camera_names(model: mujoco.MjModel) -> list[str]:
    """Named cameras in model order (unnamed cameras are left out)."""
    names = (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam))
    return [n for n in names if n]
