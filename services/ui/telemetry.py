"""telemetry.jsonl → compact columns for charts: one array per channel, keyed by each frame's video time.

A row per frame (`episode`, `frame`, `video_t`, optional `concat_frame`/`concat_t`, then what the producer
recorded: `t`, `step`, `reward`, `action`, and for richer telemetry `qpos`, `qvel`, `sensordata`, `obs`).
The first row may carry `"names": {channel: [labels]}` (joint / sensor / actuator names) for the vector
channels; files without it get index labels. Sending columns instead of rows is ~3× fewer bytes and lets the chart
library use the arrays as they are.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

# Row fields that are the time axis or bookkeeping, not channels to plot.
AXES = {"episode", "frame", "video_t", "concat_frame", "concat_t", "names"}
# Chart groups, in the order a page shows them; anything else numeric goes to "other".
GROUPS = ("reward", "action", "qpos", "qvel", "sensordata", "obs")


@dataclass
class EpisodeColumns:
    frame: list[int] = field(default_factory=list)
    video_t: list[float] = field(default_factory=list)
    concat_t: list[float | None] = field(default_factory=list)
    channels: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Telemetry:
    names: dict[str, list[str]] = field(default_factory=dict)
    episodes: dict[int, EpisodeColumns] = field(default_factory=dict)

    def columns(self, episode: int | None) -> dict[str, Any]:
        """One episode's columns, or (None) every episode back to back on the concatenated video's time."""
        if episode is None:
            eps = [self.episodes[k] for k in sorted(self.episodes)]
            merged = EpisodeColumns()
            keys = list(dict.fromkeys(k for e in eps for k in e.channels))
            for e in eps:
                n = len(e.frame)
                merged.frame += e.frame
                merged.video_t += e.concat_t
                for k in keys:
                    merged.channels.setdefault(k, []).extend(e.channels.get(k) or [None] * n)
            if any(t is None for t in merged.video_t):
                merged.video_t = [float(i) for i in range(len(merged.frame))]  # no concat video: frame index
            return self._series(merged, None)
        cols = self.episodes.get(episode)
        if cols is None:
            raise KeyError(episode)
        return self._series(cols, episode)

    def _series(self, cols: EpisodeColumns, episode: int | None) -> dict[str, Any]:
        series: list[dict[str, Any]] = []
        for name, values in cols.channels.items():
            width = max((len(v) for v in values if isinstance(v, list)), default=0)
            if width:
                labels = self.names.get(name) or []
                for i in range(width):
                    label = labels[i] if i < len(labels) else str(i)
                    series.append({"name": f"{name}[{label}]", "group": _group(name),
                                   "values": [_num(v[i]) if isinstance(v, list) and i < len(v) else None
                                              for v in values]})
            elif any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                series.append({"name": name, "group": _group(name), "values": [_num(v) for v in values]})
            if name == "reward":  # return so far, starting again with each episode (frame 0)
                total, ret = 0.0, []
                for i, v in enumerate(values):
                    if i and cols.frame[i] == 0:
                        total = 0.0
                    total += _num(v) or 0.0
                    ret.append(round(total, 9))
                series.append({"name": "return", "group": "reward", "values": ret})
        order = {g: i for i, g in enumerate((*GROUPS, "time", "other"))}
        series.sort(key=lambda s: order[s["group"]])
        return {"episode": episode, "frames": len(cols.frame), "frame": cols.frame, "video_t": cols.video_t,
                "series": series}


def _group(name: str) -> str:
    if name in GROUPS:
        return name
    if name in ("t", "step"):
        return "time"
    return "other"


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return v
    return None


def parse(data: bytes, episode: int | None = None) -> Telemetry:
    """Parse telemetry.jsonl (lines that do not parse are skipped, not fatal).

    With `episode`, only that episode's rows are decoded: simreel's encoder writes each row starting
    with `{"episode":N,`, so the others are skipped by that prefix without parsing (a 60 s × 10 episode
    file is ~6.5 MB; one episode is a tenth of it). Files written otherwise are parsed whole.
    """
    lines = data.splitlines()
    tel = Telemetry()
    if episode is not None and lines:
        prefix = b'{"episode":%d,' % episode
        mine = [ln for ln in lines if ln.startswith(prefix)]
        if mine or _COMPACT_ROW.match(lines[0]):
            _names_from(tel, lines[0])
            lines = mine
    for line in lines:
        if not line.strip():
            continue
        try:
            row = _decode(line)
        except msgspec.DecodeError:
            continue
        if not isinstance(row, dict):
            continue
        names = row.get("names")
        if isinstance(names, dict):
            _add_names(tel, names)
        ep = row.get("episode")
        if not isinstance(ep, int):
            continue
        cols = tel.episodes.get(ep)
        if cols is None:
            cols = tel.episodes[ep] = EpisodeColumns()
        n = len(cols.frame)
        cols.frame.append(int(row.get("frame", n)))
        cols.video_t.append(float(row.get("video_t", n)))
        cols.concat_t.append(row.get("concat_t"))
        for k, v in row.items():
            if k in AXES:
                continue
            col = cols.channels.get(k)
            if col is None:
                col = cols.channels[k] = [None] * n
            col.append(v)
        for k, col in cols.channels.items():
            if len(col) <= n:
                col.append(None)
    return tel


_decode = msgspec.json.Decoder().decode
_COMPACT_ROW = re.compile(rb'\{"episode":\d+,')  # how simreel's encoder starts every row


def _add_names(tel: Telemetry, names: dict) -> None:
    tel.names.update({k: [str(x) for x in v] for k, v in names.items() if isinstance(v, list)})


def _names_from(tel: Telemetry, first_line: bytes) -> None:
    if b'"names"' not in first_line:
        return
    try:
        row = _decode(first_line)
    except msgspec.DecodeError:
        return
    if isinstance(row, dict) and isinstance(row.get("names"), dict):
        _add_names(tel, row["names"])
