"""What a run of a scene is called in lists (runs, the ui): the scene file's name, else the model's
own `<mujoco model=…>`, else a short digest of inline MJCF. One rule, for the simulator's label and
for read models built from requests alone."""
from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

_MODEL = re.compile(r"""<mujoco\b[^>]*?\bmodel\s*=\s*["']([^"']{1,80})["']""")


def scene_name(scene: str) -> str:
    text = scene.lstrip()
    if text.startswith("<"):
        m = _MODEL.search(text[:4096])
        if m:
            return m.group(1)
        return "inline:" + hashlib.sha256(text.encode()).hexdigest()[:12]
    if scene.startswith(("file:",)) or scene.endswith(".xml"):
        return PurePosixPath(scene.removeprefix("file:")).name or scene
    return scene
