"""Which files an MJCF scene reads, found the way MuJoCo's own parser finds them.

Both ends use this one resolver: the client, to pack every file a scene needs from the user's disk,
and the simulator, to check a request's tree before MuJoCo opens anything. MuJoCo's rules (its XML
reader, `IncludeXML` and `ResolveFilePath`, checked against the compiler on this version) are not the
obvious ones, so they are spelled out here:

- `<include file>`: first relative to the main file's directory, then relative to the directory of
  the document that holds the include (nested includes).
- `<compiler meshdir/texturedir/assetdir>` are global: the last one met in document order, includes
  expanded, applies to every element, relative to the main file's directory.
- mesh and flexcomp files: `meshdir` (else `assetdir`); textures and their six cube faces:
  `texturedir` (else `assetdir`); hfield and skin files: `assetdir`. When that file does not exist,
  an element inside an included document falls back to the included document's own directory.
- `<model file>` (an attached model) is found like an include; inside it, paths resolve against the
  attached file's own directory with its own compiler directories.
- `<compiler strippath="true">` reduces every asset file to its base name.

A reference can have several candidates; the first that exists is the one MuJoCo opens. The others
may still be *tried* by MuJoCo, which matters to a sandbox (see `Resolution.climb`).
"""
from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

from simreel.sim.errors import SceneError, SceneForbidden

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_DIR_ATTRS = ("assetdir", "meshdir", "texturedir")
_TEXTURE_ATTRS = ("file", "fileright", "fileleft", "fileup", "filedown", "filefront", "fileback")
_MAX_DEPTH = 16


@dataclass(frozen=True)
class Reference:
    """One file attribute: `<tag attr="value">` in `document`, opened as `path` (None: not found)."""

    tag: str
    attr: str
    value: str
    document: str
    candidates: tuple[str, ...]  # every path MuJoCo may look at, the one it opens first
    path: str | None  # the file MuJoCo opens, when it exists
    # Other candidates that exist: MuJoCo's choice depends on their existence, so they travel too.
    present: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"<{self.tag} {self.attr}={self.value!r}> in {self.document}"


@dataclass
class Resolution:
    """Every reference of a scene and the files they open. Paths are normalized POSIX paths in the
    caller's namespace (absolute on a disk, relative inside a request's tree)."""

    entry: str
    references: list[Reference] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        """The entry and every file opened, each once, in the order met."""
        out = dict.fromkeys([self.entry])
        for r in self.references:
            if r.path is not None:
                out[r.path] = None
            out.update(dict.fromkeys(r.present))
        return list(out)

    @property
    def missing(self) -> list[Reference]:
        return [r for r in self.references if r.path is None]

    def climb(self) -> int:
        """How many levels above the tree's top any candidate reaches ('..' past the root): MuJoCo
        may try such a path before the one that exists, so a sandbox puts that many empty levels
        above the tree."""
        deepest = 0
        for r in self.references:
            for c in r.candidates:
                parts = c.split("/")
                n = 0
                while n < len(parts) and parts[n] == "..":
                    n += 1
                deepest = max(deepest, n)
        return deepest


def clean(value: str, what: str) -> str:
    """`value` as a POSIX path that may climb with '..' but is never absolute, a URL or padded."""
    if not value or value != value.strip():
        raise SceneForbidden(f"{what} {value!r}: empty or padded file names are refused")
    if "\x00" in value:
        raise SceneForbidden(f"{what} {value!r}: NUL byte in file name")
    posix = value.replace("\\", "/")
    if posix.startswith("/") or posix.startswith("~") or _SCHEME.match(posix):
        raise SceneForbidden(
            f"{what} {value!r}: absolute paths and URLs are refused; name the file relative to the scene "
            "and ship it with the request")
    return posix


def join(*parts: str) -> str:
    """Join and normalize; a relative result may start with '..' (it climbs above its base)."""
    joined = posixpath.join(*[p for p in parts if p])
    return posixpath.normpath(joined) if joined else "."


def _parse(text: bytes, source: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        line, col = e.position
        msg = str(e).split(":")[0]
        snippet = ""
        lines = text.decode("utf-8", "replace").splitlines()
        if 0 < line <= len(lines):
            snippet = f" (near {lines[line - 1].strip()[:60]!r})"
        where = "" if source == "the scene" else f" in {source}"
        raise SceneError(f"MJCF parse error{where} at line {line}, column {col + 1}: {msg}{snippet}") from None


@dataclass
class _Model:
    """One model being parsed: the main file or an attached `<model file>`."""

    dir: str
    dirs: dict[str, str] = field(default_factory=dict)
    strippath: bool = False


def resolve(entry: str, exists: Callable[[str], bool], read: Callable[[str], bytes], *,
            label: Callable[[str], str] = lambda p: p) -> Resolution:
    """Every file the scene at `entry` references, with MuJoCo's rules.

    `exists(path)` and `read(path)` see the namespace (a disk, a request's tree); `label(path)` names a
    document in errors. Raises SceneError for malformed XML, include cycles and refused paths;
    references whose file exists nowhere are returned with `path=None` (the caller names them).
    """
    res = Resolution(entry=join(entry))
    _model(res, res.entry, exists, read, label, depth=0, stack=())
    return res


def _model(res: Resolution, path: str, exists, read, label, depth: int, stack: tuple[str, ...]) -> None:
    model = _Model(dir=posixpath.dirname(path))
    docs: list[tuple[ET.Element, str, str | None]] = []  # (root, document path, its include dir)
    _expand(res, model, path, None, exists, read, label, depth, stack, docs)
    for root, doc, inc_dir in docs:
        _assets(res, model, root, doc, inc_dir, exists, read, label, depth, stack)


def _expand(res, model: _Model, path: str, inc_dir: str | None, exists, read, label, depth, stack, docs) -> None:
    """Walk one document in order, recording compiler directories and descending into includes
    (their directories are global, so assets are resolved only after the whole walk)."""
    if depth > _MAX_DEPTH:
        raise SceneError(f"includes nested deeper than {_MAX_DEPTH} levels at {label(path)}")
    if path in stack:
        raise SceneError(f"include cycle: {label(path)} includes itself")
    stack = (*stack, path)
    root = _parse(read(path), label(path))
    docs.append((root, path, inc_dir))
    here = posixpath.dirname(path)
    for el in root.iter():
        if el.tag == "compiler":
            for attr in _DIR_ATTRS:
                if attr in el.attrib:
                    value = clean(el.attrib[attr], f"<compiler {attr}> in {label(path)}")
                    if join(model.dir, value).startswith(".."):  # every file found through it would escape
                        raise SceneForbidden(f"<compiler {attr}={value!r}> in {label(path)}: '..' climbs out of "
                                             "the scene's tree")
                    model.dirs[attr] = value
            if el.attrib.get("strippath", "").strip().lower() == "true":
                model.strippath = True
        elif el.tag == "include" and "file" in el.attrib:
            value = clean(el.attrib["file"], f"<include file> in {label(path)}")
            cands = tuple(dict.fromkeys([join(model.dir, value), join(here, value)]))
            found = next((c for c in cands if exists(c)), None)
            res.references.append(Reference("include", "file", el.attrib["file"], label(path), cands, found))
            if found is not None:
                _expand(res, model, found, posixpath.dirname(found), exists, read, label, depth + 1, stack, docs)


def _assets(res, model: _Model, root: ET.Element, doc: str, inc_dir: str | None, exists, read, label,
            depth, stack) -> None:
    d = model.dirs
    asset_dir = d.get("assetdir", "")
    mesh_dir = d.get("meshdir", asset_dir)
    texture_dir = d.get("texturedir", asset_dir)
    for el in root.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        # (attributes, directory MuJoCo's parser checks the file in, directory it is compiled from)
        if tag == "mesh":
            attrs, check, compiled = ("file",), mesh_dir, mesh_dir
        elif tag == "texture":
            attrs, check, compiled = _TEXTURE_ATTRS, texture_dir, texture_dir
        elif tag in ("hfield", "skin"):
            attrs, check, compiled = ("file",), asset_dir, mesh_dir
        elif tag == "flexcomp":
            attrs, check, compiled = ("file",), "", mesh_dir
        elif tag == "model":
            attrs, check, compiled = ("file",), "", ""
        else:
            if tag != "include":
                _refuse_unknown_files(el, tag, doc, label)
            continue
        for attr in attrs:
            if attr not in el.attrib:
                continue
            value = clean(el.attrib[attr], f"<{tag} {attr}> in {label(doc)}")
            checked = join(model.dir, check, value)
            primary = join(model.dir, compiled, value)
            fallback = join(inc_dir, value) if inc_dir is not None else None
            if model.strippath and tag != "model":
                opened = join(model.dir, compiled, posixpath.basename(value))
            elif exists(checked) or fallback is None:
                opened = primary
            else:
                opened = fallback
            cands = tuple(dict.fromkeys(c for c in (opened, checked, primary, fallback) if c is not None))
            found = opened if exists(opened) else None
            present = tuple(c for c in cands if c != opened and exists(c))
            res.references.append(Reference(tag, attr, el.attrib[attr], label(doc), cands, found, present))
            if tag == "model" and found is not None:
                _model(res, found, exists, read, label, depth + 1, (*stack, doc))


def _refuse_unknown_files(el: ET.Element, tag: str, doc: str, label) -> None:
    """A `file…` attribute on an element MuJoCo does not read files for is still checked, so that a
    future element that does cannot smuggle an absolute path past this resolver."""
    for attr, value in el.attrib.items():
        if attr.startswith("file"):
            clean(value, f"<{tag} {attr}> in {label(doc)}")
