"""Recorders hand out typed RecordedVideo records; code written against the older dicts keeps working."""
from __future__ import annotations

import pytest

from simreel.gym import RecordedVideo


def _video(**kw) -> RecordedVideo:
    base = dict(name="rl-video-episode-0", path="/v/rl-video-episode-0.mp4", url="file:///v.mp4", run_id="r1",
                frames=30, fps=30.0, status="completed", episode=0)
    return RecordedVideo(**{**base, **kw})


def test_attributes_and_the_mapping_view_agree():
    v = _video()
    assert v.url == v["url"] == "file:///v.mp4"
    assert v["episode"] == 0 and v.get("step") is None and v.get("nope", 7) == 7
    assert "status" in v and "nope" not in v
    assert set(v.keys()) == set(v.as_dict())
    with pytest.raises(KeyError):
        v["nope"]


def test_it_is_an_immutable_record():
    with pytest.raises(AttributeError):
        _video().status = "failed"  # type: ignore[misc]
