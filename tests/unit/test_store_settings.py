"""Store selection from SIMREEL_* variables, and the S3Store parts that need no server."""
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from minio.error import S3Error, ServerError

from simreel.store import LocalStore, S3Store, StoreConfigError, key_prefix_from_env, store_from_env
from simreel.store.s3 import MAX_PRESIGN_SECONDS, clean_metadata, is_retryable, parse_endpoint

S3_ENV = {
    "SIMREEL_STORE": "s3",
    "SIMREEL_S3_ENDPOINT": "minio:9000",
    "SIMREEL_S3_ACCESS_KEY": "AKID",
    "SIMREEL_S3_SECRET_KEY": "top-secret-value",
}


def test_default_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = store_from_env({})
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "simreel-out").resolve()


def test_local_dir_and_public_url(tmp_path):
    store = store_from_env({"SIMREEL_STORE": "local", "SIMREEL_STORE_DIR": str(tmp_path),
                            "SIMREEL_PUBLIC_BASE_URL": "https://cdn.example/x"})
    assert store.root == tmp_path.resolve()
    assert store.url("a/b") == "https://cdn.example/x/a/b"


def test_s3_from_env():
    store = store_from_env(S3_ENV)
    assert isinstance(store, S3Store)
    assert (store.endpoint, store.secure, store.bucket) == ("minio:9000", False, "simreel")
    assert store.presign_seconds == MAX_PRESIGN_SECONDS
    assert "top-secret-value" not in repr(store) and "AKID" not in repr(store)


def test_an_s3_endpoint_without_a_store_means_s3_not_a_silent_local_dir():
    env = {k: v for k, v in S3_ENV.items() if k != "SIMREEL_STORE"}
    assert isinstance(store_from_env(env), S3Store)
    # ... and when its keys are missing, the error says why S3 was chosen and how to choose local
    with pytest.raises(StoreConfigError, match="SIMREEL_S3_ACCESS_KEY is not set .*SIMREEL_S3_ENDPOINT is set.*"
                                               "SIMREEL_STORE=local"):
        store_from_env({"SIMREEL_S3_ENDPOINT": "minio:9000"})
    # an explicit choice wins
    assert isinstance(store_from_env(dict(env, SIMREEL_STORE="local")), LocalStore)


@pytest.mark.parametrize(
    "endpoint, secure, expect",
    [
        ("http://minio:9000", None, ("minio:9000", False)),
        ("https://s3.example.com", None, ("s3.example.com", True)),
        ("https://s3.example.com/", "1", ("s3.example.com", True)),
        ("minio:9000", "true", ("minio:9000", True)),
        ("minio:9000", "0", ("minio:9000", False)),
    ],
)
def test_endpoint_forms(endpoint, secure, expect):
    env = dict(S3_ENV, SIMREEL_S3_ENDPOINT=endpoint)
    if secure is not None:
        env["SIMREEL_S3_SECURE"] = secure
    store = store_from_env(env)
    assert (store.endpoint, store.secure) == expect


@pytest.mark.parametrize(
    "missing", ["SIMREEL_S3_ENDPOINT", "SIMREEL_S3_ACCESS_KEY", "SIMREEL_S3_SECRET_KEY"]
)
def test_missing_variable_is_named(missing):
    env = {k: v for k, v in S3_ENV.items() if k != missing}
    with pytest.raises(StoreConfigError, match=missing):
        store_from_env(env)


@pytest.mark.parametrize(
    "extra, named",
    [
        ({"SIMREEL_STORE": "ftp"}, "SIMREEL_STORE"),
        ({"SIMREEL_S3_SECURE": "maybe"}, "SIMREEL_S3_SECURE"),
        ({"SIMREEL_S3_ENDPOINT": "http://m:9000", "SIMREEL_S3_SECURE": "1"}, "SIMREEL_S3_SECURE"),
        ({"SIMREEL_S3_ENDPOINT": "http://m:9000/bucket"}, "SIMREEL_S3_ENDPOINT"),
        ({"SIMREEL_S3_PRESIGN_SECONDS": "soon"}, "SIMREEL_S3_PRESIGN_SECONDS"),
        ({"SIMREEL_S3_PRESIGN_SECONDS": "0"}, "SIMREEL_S3_PRESIGN_SECONDS"),
    ],
)
def test_bad_values_are_named(extra, named):
    with pytest.raises(StoreConfigError, match=named):
        store_from_env(dict(S3_ENV, **extra))


def test_key_prefix():
    assert key_prefix_from_env({}) == "simreel"
    assert key_prefix_from_env({"SIMREEL_KEY_PREFIX": "team-a"}) == "team-a"


def test_parse_endpoint_rejects_paths():
    with pytest.raises(StoreConfigError):
        parse_endpoint("minio:9000/bucket")
    with pytest.raises(StoreConfigError):
        parse_endpoint("ftp://minio")


def test_presign_is_local_and_clamped():
    """Presigning needs no server (region is fixed), and never exceeds the 7-day SigV4 limit."""
    store = S3Store("127.0.0.1:1", "AKID", "secret", "bkt", presign_seconds=30 * 24 * 3600)
    assert store.presign_seconds == MAX_PRESIGN_SECONDS
    t0 = time.time()
    url = store.url("simreel/s/r/0000/v.mp4")
    parts = urlsplit(url)
    assert parts.netloc == "127.0.0.1:1" and parts.path == "/bkt/simreel/s/r/0000/v.mp4"
    q = parse_qs(parts.query)
    assert q["X-Amz-Expires"] == [str(MAX_PRESIGN_SECONDS)]
    assert "X-Amz-Signature" in q and "secret" not in url
    assert time.time() - t0 < 1.0


def test_public_url_mode():
    store = S3Store("127.0.0.1:1", "AKID", "secret", "bkt",
                    public_base_url="https://cdn.example.com/media/")
    assert store.url("simreel/s/r/all/v.mp4") == "https://cdn.example.com/media/simreel/s/r/all/v.mp4"


def test_constructor_limits():
    with pytest.raises(ValueError):
        S3Store("h:1", "a", "b", "bkt", part_size=1024)
    with pytest.raises(ValueError):
        S3Store("h:1", "a", "b", "bkt", presign_seconds=0)
    with pytest.raises(StoreConfigError):
        S3Store("http://h:1", "a", "b", "bkt", secure=True)


def _s3error(status: int, code: str) -> S3Error:
    resp = urllib3.HTTPResponse(body=b"", status=status)
    return S3Error(resp, code, "msg", "/bkt/key", "req", "host")


@pytest.mark.parametrize(
    "exc, retry",
    [
        (urllib3.exceptions.NewConnectionError(None, "refused"), True),
        (urllib3.exceptions.ProtocolError("reset"), True),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"), True),
        (ConnectionResetError(), True),
        (ServerError("boom", 503), True),
        (ServerError("slow", 429), True),
        (_s3error(500, "InternalError"), True),
        (_s3error(503, "SlowDown"), True),
        (_s3error(403, "AccessDenied"), False),
        (_s3error(404, "NoSuchBucket"), False),
        (_s3error(400, "InvalidArgument"), False),
        (urllib3.exceptions.SSLError("bad cert"), False),
        (ValueError("bug"), False),
        (FileNotFoundError(), False),
    ],
)
def test_retry_classification(exc, retry):
    assert is_retryable(exc) is retry


def test_metadata_cleaning():
    assert clean_metadata({"run_id": "r1", "X-Amz-Meta-Episode": 3}) == {"run_id": "r1", "episode": "3"}
    assert clean_metadata({"note": "héllo\n"}) == {"note": "h%C3%A9llo%0A"}
    with pytest.raises(ValueError):
        clean_metadata({"bad name": "x"})
    with pytest.raises(ValueError):
        clean_metadata({"big": "x" * 3000})


async def test_s3_missing_source_fails_before_any_request(tmp_path):
    from simreel.store import ArtifactStore, SourceNotFoundError

    store = S3Store("127.0.0.1:1", "AKID", "secret", "bkt", retries=0)
    assert isinstance(store, ArtifactStore)
    with pytest.raises(SourceNotFoundError) as err:
        await store.put("p/s/r/all/x", tmp_path / "nope", content_type="x/y", metadata={})
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(ValueError):
        await store.put("../x", tmp_path / "nope", content_type="x/y", metadata={})
    await store.close()


async def test_unreachable_server_gives_up_with_a_clear_error_and_no_secret_in_logs(tmp_path, library_state, caplog):
    from simreel.runtime.log import FIELDS_ATTR
    from simreel.store import StoreError

    src = tmp_path / "v.mp4"
    src.write_bytes(b"x" * 100)
    secret = "s3cr3t-value-never-logged"
    store = S3Store("127.0.0.1:1", "AKID-not-logged", secret, "bkt", retries=2, backoff_s=0.01)
    caplog.set_level("DEBUG", logger="simreel")
    with pytest.raises(StoreError, match="after 3 attempts") as err:
        await store.put("p/s/r/all/v.mp4", src, content_type="video/mp4", metadata={})
    assert "127.0.0.1:1" in str(err.value) and "bkt" in str(err.value)
    logs = [getattr(r, FIELDS_ATTR) for r in caplog.records if hasattr(r, FIELDS_ATTR)]
    retries = [e for e in logs if e["event"].startswith("waiting for S3 at 127.0.0.1:1 (connection refused), retry ")]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert [e["event"][-1] for e in retries] == ["1", "2"]
    assert all(e["key"] == "p/s/r/all/v.mp4" and e["bucket"] == "bkt" for e in retries)
    text = caplog.text + repr(logs) + str(err.value)
    assert secret not in text and "AKID-not-logged" not in text
    await store.close()
