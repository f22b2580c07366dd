"""File names and values as Gymnasium users expect them, shared by every simreel recorder wrapper."""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from simreel.contract.outputs import video_file_name


def jsonable(x: Any) -> Any:
    """Actions and rewards as msgpack/JSON-able values (numpy arrays and scalars become lists/numbers)."""
    if isinstance(x, np.generic):  # before the builtins: np.float64 is a float msgpack cannot encode
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return repr(x)


def local_name(name: str, fmt: str) -> str:
    """gymnasium's file name, with the suffix of simreel's one naming rule (`.mp4`, `-frames.zip`, …)."""
    return name + video_file_name(0, fmt).removeprefix("episode-0000")


def run_prefix(name_prefix: str) -> str:
    p = re.sub(r"[^A-Za-z0-9_-]+", "-", name_prefix).strip("-_")[:28]
    return p or "video"


def link(src: str, dest: Path) -> None:
    """Hard-link the stored file into video_folder (no copy, no extra disk); copy across filesystems.
    Replaces an existing file atomically, as gymnasium overwrites same-named videos."""
    dest.parent.mkdir(parents=True, exist_ok=True)  # a name_prefix may contain "/", as in gymnasium
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
