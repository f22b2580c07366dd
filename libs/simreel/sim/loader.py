"""Load MJCF into an `MjModel` without letting a request read files it was not given.

A request's scene is a *tree*: the MJCF and the files it references, named by their paths inside the
tree (shipped by content through the scene-file store, inline in `assets`, or read under a configured
scene root). Every reference is resolved with MuJoCo's own rules (`mjcf_files`) before compiling, and
must stay inside the tree after normalisation: a reference may climb with `..` as robot packages do
(`meshdir="../meshes"`), but absolute paths, URLs, NUL bytes, escapes above the tree and symlinks out
of a scene root are refused.

The referenced files are then laid out as plain files in a private sandbox directory and compiled with
`MjModel.from_xml_path`, so MuJoCo resolves them exactly as on the user's disk. MuJoCo's in-memory VFS
is not used for this: it matches files by base name only, so two `finger.stl` in different folders
(common in robot packages) would be confused.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import mujoco

from simreel.runtime import log
from simreel.contract.scene_name import scene_name
from simreel.sim import mjcf_files
from simreel.sim.errors import SceneError, SceneForbidden

__all__ = [
    "SceneError",
    "load_model",
    "load_path",
    "load_tree",
    "resolve_scene",
    "compiled_xml",
    "camera_names",
    "source_of",
    "ensure_offscreen",
    "Source",
]

_log = log.get(__name__)

# mj_saveLastXML works on MuJoCo's process-global "last loaded model"; loads and saves are serialized
# so that compiled_xml() can make its model the last one before saving.
_LOAD_LOCK = threading.Lock()
_SOURCES: "weakref.WeakKeyDictionary[mujoco.MjModel, Source]" = weakref.WeakKeyDictionary()
_INLINE_NAME = "scene.xml"


@dataclass(frozen=True)
class Source:
    """Where a model was compiled from: the MJCF text and its file in a sandbox that lives as long as
    the model (so it can be recompiled, e.g. as an MjSpec with an added camera)."""

    xml: str
    path: Path


FileData = bytes | Path


class _Namespace:
    """A scene tree: files given by path (bytes, or a local file such as a cache entry), then files
    under scene roots. Paths are normalized, relative, and never climb above the tree."""

    def __init__(self, files: Mapping[str, FileData] = {}, roots: Sequence[Path] = ()) -> None:
        self.files: dict[str, FileData] = {}
        for key, data in files.items():
            if not isinstance(data, (bytes, bytearray, memoryview, Path)):
                raise SceneError(f"file {key!r}: expected bytes, got {type(data).__name__}")
            name = mjcf_files.clean(key, "file name")
            norm = mjcf_files.join(name)
            if norm.startswith("..") or norm == ".":
                raise SceneForbidden(f"file name {key!r} climbs out of the scene's tree")
            self.files[norm] = bytes(data) if not isinstance(data, Path) else data
        self.roots = [Path(r).resolve() for r in roots]

    def _from_roots(self, path: str) -> Path | None:
        for r in self.roots:
            p = r / path
            if p.is_file():
                real = p.resolve()
                if any(real.is_relative_to(a) for a in self.roots):
                    return real
        return None

    def get(self, path: str) -> FileData | None:
        if path.startswith("..") or path.startswith("/"):
            return None
        data = self.files.get(path)
        return data if data is not None else self._from_roots(path)

    def exists(self, path: str) -> bool:
        return self.get(path) is not None

    def read(self, path: str) -> bytes:
        data = self.get(path)
        if data is None:
            raise SceneError(f"file {path!r} is not in the scene's tree")
        return data.read_bytes() if isinstance(data, Path) else bytes(data)


def _resolve(ns: _Namespace, entry: str, entry_label: str) -> mjcf_files.Resolution:
    def label(p: str) -> str:
        return entry_label if p == entry else p

    res = mjcf_files.resolve(entry, ns.exists, ns.read, label=label)
    for ref in res.references:
        if ref.path is not None:
            continue
        climbing = [c for c in ref.candidates if c.startswith("..")]
        if climbing and len(climbing) == len(ref.candidates):
            raise SceneForbidden(
                f"{ref.describe()}: resolves to {climbing[0]!r}, which climbs out of the scene's tree; "
                "references may climb with '..' only as far as the tree's top")
        raise SceneError(
            f"file {ref.value!r} referenced by {ref.describe()} not found (looked for "
            f"{', '.join(repr(c) for c in ref.candidates if not c.startswith('..'))}): ship it with the request "
            "or place it under a configured scene root")
    return res


class _Sandboxes:
    """The scene trees laid out on disk, one directory per content, reused while the process lives.

    MuJoCo caches compiled meshes by file path (and modification time): a robot's second run in the
    same simulator finds its meshes at the same paths and compiles several times faster (dm_control's
    dog: about 1 s, then 0.3 s). Files are hard links into the scene-file cache where possible, so a
    kept tree costs directory entries, not bytes. Trees no model uses are kept up to `keep`, then the
    least recently used go.
    """

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._root: Path | None = None
        self._users: dict[str, int] = {}
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()

    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="simreel-scenes-"))
            atexit.register(shutil.rmtree, self._root, True)
        return self._root

    def acquire(self, ns: _Namespace, res: mjcf_files.Resolution, entry_text: bytes | None) -> tuple[str, Path]:
        """(key, entry path) of the tree laid out for this content; release(key) when done."""
        layout = {path: (entry_text if path == res.entry and entry_text is not None else ns.get(path))
                  for path in res.files}
        key = _content_key(layout, res.climb())
        with self._lock:
            self._users[key] = self._users.get(key, 0) + 1
            self._last_used[key] = time.monotonic()
        top = self.root() / key
        try:
            if not top.exists():
                tmp = Path(tempfile.mkdtemp(dir=self.root(), prefix=".new-"))
                try:
                    _lay_out(tmp.joinpath(*(["up"] * res.climb()), "tree"), layout)
                    os.rename(tmp, top)
                except OSError:
                    if not top.exists():
                        raise
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            self.release(key)
            raise
        return key, top.joinpath(*(["up"] * res.climb()), "tree", res.entry)

    def release(self, key: str) -> None:
        with self._lock:
            self._users[key] -= 1
            idle = sorted((t, k) for k, t in self._last_used.items() if not self._users.get(k))
            stale = [k for _, k in idle[: max(0, len(idle) - self.keep)]]
            for k in stale:
                self._users.pop(k, None)
                self._last_used.pop(k, None)
        for k in stale:
            shutil.rmtree(self.root() / k, ignore_errors=True)


def _content_key(layout: Mapping[str, FileData | None], climb: int) -> str:
    h = hashlib.sha256(f"climb={climb}".encode())
    for path in sorted(layout):
        data = layout[path]
        if isinstance(data, Path):
            st = data.stat()
            ident = f"file:{data}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
        else:
            ident = b"bytes:" + hashlib.sha256(bytes(data or b"")).digest()
        h.update(path.encode() + b"\0" + ident + b"\0")
    return h.hexdigest()[:32]


def _lay_out(tree: Path, layout: Mapping[str, FileData | None]) -> None:
    for path, data in layout.items():
        dst = tree / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            try:
                os.link(data, dst)
            except OSError:
                shutil.copyfile(data, dst)
        else:
            dst.write_bytes(bytes(data or b""))


_SANDBOXES = _Sandboxes()


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


def _compile(ns: _Namespace, entry: str, entry_label: str, *, width: int, height: int,
             entry_text: str | None = None) -> mujoco.MjModel:
    """Resolve, sandbox and compile the tree's scene at `entry`."""
    res = _resolve(ns, entry, entry_label)
    key, path = _SANDBOXES.acquire(ns, res, entry_text.encode() if entry_text is not None else None)
    try:
        with _LOAD_LOCK:
            model = mujoco.MjModel.from_xml_path(str(path))
    except ValueError as e:
        _SANDBOXES.release(key)
        tree = str(path)[: len(str(path)) - len(res.entry)]
        raise SceneError(_humanize(e).replace(tree, "").replace(str(_SANDBOXES.root()), "<sandbox>")) from None
    except BaseException:
        _SANDBOXES.release(key)
        raise
    weakref.finalize(model, _SANDBOXES.release, key)
    ensure_offscreen(model, width, height)
    text = entry_text if entry_text is not None else ns.read(res.entry).decode("utf-8", "replace")
    _SOURCES[model] = Source(text, path)
    return model


def _tree_root(entry: str) -> str:
    return str(PurePosixPath(entry).parent)


def load_model(
    xml: str,
    assets: Mapping[str, FileData] | None = None,
    *,
    roots: Sequence[Path | str] = (),
    width: int = 0,
    height: int = 0,
) -> mujoco.MjModel:
    """Compile inline `xml`, which sits at the top of its tree: its references are looked up in
    `assets` (keys are paths relative to the scene, e.g. `"meshes/arm.stl"`), then under `roots`."""
    if not isinstance(xml, str):
        raise SceneError(f"MJCF must be text, got {type(xml).__name__}")
    files = dict(assets or {})
    entry = _INLINE_NAME
    while entry in files:
        entry = "_" + entry
    files[entry] = b""
    ns = _Namespace(files, [Path(r) for r in roots])
    ns.files[entry] = xml.encode()
    return _compile(ns, entry, "the scene", width=width, height=height, entry_text=xml)


def load_tree(
    entry: str,
    files: Mapping[str, FileData],
    *,
    width: int = 0,
    height: int = 0,
) -> mujoco.MjModel:
    """Compile the scene file `entry` of a request's tree of `files` (path in the tree → bytes or a
    local file holding them)."""
    ns = _Namespace(files)
    norm = mjcf_files.join(mjcf_files.clean(entry, "scene"))
    if norm not in ns.files:
        raise SceneError(f"scene {entry!r} is not one of the request's files")
    return _compile(ns, norm, norm, width=width, height=height)


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
    assets: Mapping[str, FileData] | None = None,
    width: int = 0,
    height: int = 0,
) -> mujoco.MjModel:
    """Load a scene file that lies under one of `roots` (a relative path is tried under each root);
    its tree is that root."""
    allowed = [Path(r).resolve() for r in roots]
    if not allowed:
        raise SceneForbidden("scene files are disabled: no scene roots are configured")
    p = Path(path)
    if ".." in p.parts:
        raise SceneForbidden(f"scene path {str(path)!r}: '..' is refused")
    candidates = [p] if p.is_absolute() else [r / p for r in allowed]
    for cand in candidates:
        real = cand.resolve()
        for root in allowed:
            if real.is_relative_to(root) and real.is_file():
                ns = _Namespace(assets or {}, [root])
                rel = real.relative_to(root).as_posix()
                return _compile(ns, rel, rel, width=width, height=height)
    raise SceneForbidden(
        f"scene file {str(path)!r} not found under the scene roots ({', '.join(map(str, allowed))})"
    )


def resolve_scene(
    spec: str,
    assets: Mapping[str, FileData] | None = None,
    roots: Sequence[Path | str] = (),
    width: int = 0,
    height: int = 0,
    files: Mapping[str, FileData] | None = None,
) -> tuple[mujoco.MjModel, str]:
    """A request's `scene` field → (model, label): builtin name, inline MJCF, `file:<path>`, or the
    path of one of the request's `files` (fetched by the caller: path → bytes or local file)."""
    from simreel.sim import scenes  # local: scenes imports this module's error type only

    tree = {**(assets or {}), **(files or {})}
    text = spec.lstrip()
    if text.startswith("<"):
        return load_model(spec, tree, roots=roots, width=width, height=height), scene_name(spec)
    if files and spec in files:
        return load_tree(spec, tree, width=width, height=height), scene_name(spec)
    if spec.startswith("file:"):
        rel = spec[len("file:"):]
        return load_path(rel, roots=roots, assets=assets, width=width, height=height), f"file:{rel}"
    if spec in scenes.BUILTIN:
        info = scenes.BUILTIN[spec]
        root = info.path.parent.resolve()
        ns = _Namespace(assets or {}, [root])
        ns.files[info.path.name] = info.xml.encode()
        return _compile(ns, info.path.name, spec, width=width, height=height, entry_text=info.xml), spec
    raise SceneError(
        f"unknown scene {spec!r}: use a builtin ({', '.join(sorted(scenes.BUILTIN))}), "
        "inline MJCF starting with '<', 'file:<path under a scene root>', or the path of one of the "
        "request's files"
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
            mujoco.MjModel.from_xml_path(str(source.path))
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


def source_of(model: mujoco.MjModel) -> Source | None:
    """Where a model was compiled from by this module, to rebuild it as an MjSpec."""
    return _SOURCES.get(model)


def camera_names(model: mujoco.MjModel) -> list[str]:
    """Named cameras in model order (unnamed cameras are left out)."""
    names = (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam))
    return [n for n in names if n]
