"""A scene on the user's disk as a request ships it: every file the MJCF references, under their
common root, each named by its path in that tree and its SHA-256.

Robot packages keep meshes beside the MJCF's folder (`meshdir="../meshes"`), include files from
other folders, and attach other models; the tree is rooted where all of them meet, so it stands on
its own wherever it is unpacked. Which files are needed is decided by `mjcf_files`, MuJoCo's rules.
On the user's disk these are the user's own files: symlinks are followed and `..` may climb anywhere.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from simreel.contract import events as ev
from simreel.sim import mjcf_files
from simreel.sim.errors import SceneError

_MIB = 1024 * 1024


class SceneTooLarge(SceneError):
    """A scene over one of the size caps; the message names the cap and the setting that raises it."""


@dataclass(frozen=True)
class ScenePackage:
    root: Path  # the common directory on disk
    entry: str  # the MJCF's path in the tree
    local: dict[str, Path]  # path in the tree -> file on disk
    files: dict[str, ev.SceneFile]  # path in the tree -> digest and size

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _mib(n: int) -> str:
    return f"{n / _MIB:.1f} MiB"


def pack(path: Path | str, *, max_file_bytes: int, max_scene_bytes: int) -> ScenePackage:
    """Find, size-check and digest every file the MJCF at `path` needs. Raises SceneError naming
    the first missing file and the element that names it, or the cap a file or the scene is over."""
    entry = Path(os.path.abspath(path))
    if not entry.is_file():
        raise SceneError(f"{path}: no such file")
    res = mjcf_files.resolve(entry.as_posix(), lambda p: os.path.isfile(p), lambda p: Path(p).read_bytes(),
                             label=lambda p: os.path.relpath(p))
    for ref in res.references:
        if ref.path is None:
            raise SceneError(f"file {ref.value!r} referenced by {ref.describe()} not found (looked for "
                             f"{', '.join(os.path.relpath(c) for c in ref.candidates)})")
    paths = [Path(p) for p in res.files]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    total = 0
    local: dict[str, Path] = {}
    files: dict[str, ev.SceneFile] = {}
    for p in paths:
        size = p.stat().st_size
        rel = p.relative_to(root).as_posix()
        if size > max_file_bytes:
            raise SceneTooLarge(f"{rel} is {_mib(size)}, over the per-file cap of {_mib(max_file_bytes)} "
                                "(SIMREEL_MAX_SCENE_FILE_BYTES raises it)")
        total += size
        if total > max_scene_bytes:
            raise SceneTooLarge(f"the scene's files add up to more than the per-scene cap of "
                                f"{_mib(max_scene_bytes)} (SIMREEL_MAX_SCENE_BYTES raises it)")
        local[rel] = p
        files[rel] = ev.SceneFile(sha256=sha256_file(p), size=size)
    return ScenePackage(root=root, entry=entry.relative_to(root).as_posix(), local=local, files=files)
