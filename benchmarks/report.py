"""The one way a benchmark states its machine and hands over its figures: printed as JSON (what
RESULTS.md quotes) and, with --json, written to a file for benchmarks.run to collect."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, str]:
    return {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d")}


def emit(out: dict[str, Any], json_path: str | None) -> int:
    text = json.dumps(out, indent=2)
    print(text)
    if json_path:
        Path(json_path).write_text(text)
    return 0
