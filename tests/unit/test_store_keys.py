"""Key building is the only thing between a request's run id and a path on disk / an S3 key."""
import pytest

from simreel.store import check_key, make_key, sanitize_part


def test_make_key_layout():
    assert make_key("simreel", "sess", "run-1", 3, "video.mp4") == "simreel/sess/run-1/0003/video.mp4"
    assert make_key("simreel", "sess", "run-1", None, "all.gif") == "simreel/sess/run-1/all/all.gif"
    assert make_key("p", "s", "r", 12345, "n") == "p/s/r/12345/n"


@pytest.mark.parametrize(
    "raw, safe",
    [
        ("../x", ".._x"),
        ("a/b", "a_b"),
        ("", "_"),
        ("a\\b", "a_b"),
        ("tab\there\n", "tab_here_"),
        ("nul\x00", "nul_"),
        ("héllo wörld", "h_llo_w_rld"),
        ("ok.name_-1", "ok.name_-1"),
        ("...", "..."),
    ],
)
def test_sanitize_part(raw, safe):
    assert sanitize_part(raw) == safe


@pytest.mark.parametrize("bad", [".", ".."])
def test_relative_parts_are_refused(bad):
    with pytest.raises(ValueError, match="not allowed"):
        sanitize_part(bad)
    with pytest.raises(ValueError):
        make_key("simreel", bad, "run", 0, "v.mp4")


def test_make_key_never_escapes():
    key = make_key("../..", "/etc", "..\\..", None, "../../passwd")
    assert key.split("/") == [".._..", "_etc", ".._..", "all", ".._.._passwd"]
    assert check_key(key) == key


def test_episode_validation():
    with pytest.raises(ValueError):
        make_key("p", "s", "r", -1, "n")
    with pytest.raises(ValueError):
        make_key("p", "s", "r", True, "n")
    with pytest.raises(ValueError):
        make_key("p", "s", "r", "3", "n")  # type: ignore[arg-type]


def test_overlong_part_is_refused():
    with pytest.raises(ValueError, match="at most"):
        sanitize_part("x" * 256)


@pytest.mark.parametrize(
    "bad", ["", "/abs/key", "a//b", "a/b/", "a/../b", "./a", "a/b c", "a/\x00", "a\\b"]
)
def test_check_key_refuses(bad):
    with pytest.raises(ValueError):
        check_key(bad)
