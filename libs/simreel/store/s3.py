"""S3Store: artifacts in any S3-compatible object store (AWS S3, MinIO, SeaweedFS, ...).

The minio SDK is synchronous, so every call runs in a worker thread; the retry loop itself is
async (waits with asyncio.sleep) so a long outage never pins a thread and the task stays
cancellable between attempts.

Uploads stream the file with `put_object(length=-1)`: the SDK reads one part (part_size) at a
time, so memory is bounded by the part size, not the artifact size (the SDK copies a part a few
times: measured peak ~5 x part_size; max object = 10,000 parts = 160 GB at 16 MiB).
"""
from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import random
import re
import socket
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import check_bucket_name

from simreel.runtime import log
from simreel.store.base import (
    SourceNotFoundError,
    Stored,
    StoreConfigError,
    StoreError,
    StoreRejectedError,
    check_key,
    file_digest,
)

__all__ = ["S3Store", "parse_endpoint", "MAX_PRESIGN_SECONDS"]

MiB = 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer than 7 days
_MIN_PART, _MAX_PART = 5 * MiB, 5 * 1024 * MiB  # S3 multipart limits
_MAX_BACKOFF_S = 30.0
_MAX_METADATA_BYTES = 2048  # AWS limit for all user metadata together
_META_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "NotFound", "ResourceNotFound"}
_RETRY_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"}
# 408/429 are the 4xx that mean "try again later", not "your request is wrong".
_RETRY_4XX = {408, 429}

_log = log.get(__name__)


class _VerifyError(StoreError):
    """The server's copy does not match what we sent; worth one more upload."""


def parse_endpoint(endpoint: str, secure: bool | None = None) -> tuple[str, bool]:
    """Accept `host:port` or `http(s)://host:port`; return (host:port, secure).

    The minio SDK wants a bare host, while people paste URLs: taking both avoids a confusing
    "path in endpoint is not allowed" error. A scheme that contradicts an explicit `secure` is an
    error rather than a silent choice.
    """
    raw = endpoint.strip()
    if not raw:
        raise StoreConfigError("S3 endpoint is empty")
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https"):
            raise StoreConfigError(f"S3 endpoint scheme must be http or https, got {parts.scheme!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise StoreConfigError(
                f"S3 endpoint must be scheme://host[:port] without a path, got {endpoint!r}"
            )
        scheme_secure = parts.scheme == "https"
        if secure is not None and secure != scheme_secure:
            raise StoreConfigError(
                f"S3 endpoint {endpoint!r} says {parts.scheme} but secure={secure} was requested"
            )
        return parts.netloc, scheme_secure
    if "/" in raw:
        raise StoreConfigError(f"S3 endpoint must be host[:port], got {endpoint!r}")
    return raw, bool(secure)


class _HashingReader:
    """File wrapper that hashes and counts exactly the bytes the SDK reads (and so sends)."""

    def __init__(self, f) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha.update(data)
        self.bytes += len(data)
        return data


def _status_of(exc: BaseException) -> int | None:
    if isinstance(exc, S3Error):
        return getattr(exc.response, "status", None)
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        return getattr(exc, "_code", None)  # the SDK keeps the status only privately
    return None


def is_retryable(exc: BaseException) -> bool:
    """Connection problems and server-side (5xx) failures heal by themselves; 4xx do not."""
    if isinstance(exc, _VerifyError):
        return True
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False  # a bad certificate will be just as bad in a second
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError,
                        http.client.HTTPException)):
        return True
    if isinstance(exc, S3Error) and exc.code in _RETRY_CODES:
        return True
    status = _status_of(exc)
    if status is None:
        return False
    return status >= 500 or status in _RETRY_4XX


def _describe(exc: BaseException) -> str:
    """Short error text for logs: type + status/code, never request headers or URLs with queries."""
    if isinstance(exc, S3Error):
        return f"S3Error {exc.code} (HTTP {_status_of(exc)})"
    status = _status_of(exc)
    if status is not None:
        return f"{type(exc).__name__} (HTTP {status})"
    return f"{type(exc).__name__}: {exc}"[:300]


def _cause(exc: BaseException) -> str:
    """A few words on why a call failed, for the progress line: `connection refused`, `timed out`,
    `S3Error SlowDown (HTTP 503)`. Follows the exception's causes (urllib3 wraps the socket error)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "reason", None)
    # The socket's own error first: urllib3's NewConnectionError is also a ConnectTimeoutError.
    for kind, words in ((ConnectionRefusedError, "connection refused"), (socket.gaierror, "host name not resolved"),
                        (ConnectionResetError, "connection reset"), ((S3Error, ServerError, InvalidResponseError), None),
                        ((TimeoutError, urllib3.exceptions.TimeoutError), "timed out")):
        for e in chain:
            if isinstance(e, kind):
                return words or _describe(e)
    return type(exc).__name__


def check_bucket(bucket: str) -> None:
    """The bucket name rules the SDK enforces at every call, checked once at start."""
    try:
        check_bucket_name(bucket)
    except ValueError as exc:
        raise StoreConfigError(
            f"SIMREEL_S3_BUCKET={bucket!r} is not a valid bucket name ({exc}; 3-63 lowercase letters, digits, "
            "dots and hyphens, starting and ending with a letter or digit)") from None


def clean_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """User metadata travels as HTTP headers (`x-amz-meta-*`): names must be tokens, values
    ASCII. Non-ASCII values are percent-encoded instead of failing the whole upload."""
    out: dict[str, str] = {}
    for k, v in (metadata or {}).items():
        name = str(k)
        if name.lower().startswith("x-amz-meta-"):
            name = name[len("x-amz-meta-"):]
        if not _META_KEY.match(name):
            raise ValueError(f"metadata name {k!r} must match [A-Za-z0-9_-]+")
        value = str(v)
        if not all(0x20 <= ord(c) < 0x7F for c in value):
            value = quote(value, safe="")
        out[name.lower()] = value
    total = sum(len(k) + len(v) for k, v in out.items())
    if total > _MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {total} bytes; S3 allows {_MAX_METADATA_BYTES}")
    return out


class S3Store:
    """Artifacts in one bucket of an S3-compatible server.

    URL: `public_base_url + key` when the bucket is served publicly (CDN, anonymous-read bucket),
    else a presigned GET valid `presign_seconds` (clamped to the SigV4 maximum of 7 days).
    `region` defaults to us-east-1 so presigning never needs a network round trip; set it for
    AWS buckets elsewhere. `timeout_s` bounds one HTTP read so a hung server becomes a retry.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        public_base_url: str | None = None,
        presign_seconds: int = MAX_PRESIGN_SECONDS,
        part_size: int = 16 * MiB,
        retries: int = 6,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
    ) -> None:
        host, secure = parse_endpoint(endpoint, True if secure else None)
        if not bucket:
            raise StoreConfigError("S3 bucket name is empty")
        check_bucket(bucket)
        if not _MIN_PART <= part_size <= _MAX_PART:
            raise ValueError(f"part_size must be between 5 MiB and 5 GiB, got {part_size}")
        if retries < 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must be >= 0")
        presign_seconds = int(presign_seconds)
        if presign_seconds < 1:
            raise ValueError(f"presign_seconds must be >= 1, got {presign_seconds}")
        if presign_seconds > MAX_PRESIGN_SECONDS:
            _log.warning(
                "presign_seconds clamped: S3 presigned URLs last at most 7 days",
                requested=presign_seconds,
                used=MAX_PRESIGN_SECONDS,
            )
            presign_seconds = MAX_PRESIGN_SECONDS
        self.endpoint = host
        self.secure = secure
        self.bucket = bucket
        self.region = region or "us-east-1"
        self.public_base_url = public_base_url.rstrip("/") + "/" if public_base_url else None
        self.presign_seconds = presign_seconds
        self.part_size = int(part_size)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        # Calls retried so far (the same fact as the "waiting for S3 at …, retry n" log lines, for health
        # checks and tests that must not depend on log capture).
        self.retried = 0
        # Our own pool without urllib3 retries: one retry policy (ours, logged), not two nested.
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(10.0, timeout_s), read=timeout_s),
            maxsize=10,
            retries=False,
            cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        self._client = Minio(
            host,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=self.region,
            http_client=self._http,
        )
        self._bucket_ready = False

    def __repr__(self) -> str:  # no credentials, ever
        scheme = "https" if self.secure else "http"
        return f"S3Store(endpoint={scheme}://{self.endpoint!s}, bucket={self.bucket!r})"

    # -- URLs ---------------------------------------------------------------------------------

    def url(self, key: str) -> str:
        return self._url(key)[0]

    def _url(self, key: str) -> tuple[str, float | None]:
        check_key(key)
        if self.public_base_url:
            return self.public_base_url + quote(key, safe="/"), None
        expires_at = time.time() + self.presign_seconds
        url = self._client.presigned_get_object(
            self.bucket, key, expires=timedelta(seconds=self.presign_seconds)
        )
        return url, expires_at

    # -- operations ---------------------------------------------------------------------------

    async def put(
        self, key: str, path: Path, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> Stored:
        """Upload `path` to `key` and verify it; metadata gets `sha256` added.

        S3 metadata is fixed when the upload starts, so the digest must be known before the first
        byte: it is taken from `metadata["sha256"]` when the caller has it (VideoAvailable does),
        else from a first read of the file. The upload then hashes what it actually sends; a
        difference means the file changed under us and the object is removed.
        """
        check_key(key)
        src = Path(path)
        meta = clean_metadata(metadata)
        t0 = time.monotonic()
        try:
            if meta.get("sha256"):
                size = (await asyncio.to_thread(src.stat)).st_size
                digest = meta["sha256"].lower()
            else:
                size, digest = await asyncio.to_thread(file_digest, src)
        except FileNotFoundError as exc:
            raise SourceNotFoundError(f"cannot store {key!r}: source file {src} does not exist") from exc
        meta["sha256"] = digest
        content_type = content_type or "application/octet-stream"

        etag, sent = await self._retry(
            "put", key, lambda: self._put_sync(key, src, content_type, meta, digest)
        )
        url, expires_at = self._url(key)
        _log.info(
            "artifact stored",
            store="s3",
            endpoint=self.endpoint,
            bucket=self.bucket,
            key=key,
            bytes=sent,
            etag=etag,
            multipart=sent > self.part_size,
            ms=round((time.monotonic() - t0) * 1000, 1),
        )
        if sent != size:
            _log.warning("file size changed between stat and upload", key=key, before=size, sent=sent)
        return Stored(
            key=key,
            url=url,
            bytes=sent,
            sha256=digest,
            content_type=content_type,
            bucket=self.bucket,
            path=None,
            expires_at=expires_at,
        )

    async def delete(self, key: str) -> bool:
        check_key(key)
        existed = await self._retry("delete", key, lambda: self._delete_sync(key))
        _log.info("artifact deleted", store="s3", endpoint=self.endpoint, bucket=self.bucket,
                  key=key, existed=existed)
        return existed

    async def exists(self, key: str) -> bool:
        check_key(key)
        return await self._retry("exists", key, lambda: self._stat_sync(key) is not None)

    async def read(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes, for small artifacts a reader shows (telemetry, report, scene.xml)."""
        check_key(key)
        data = await self._retry("read", key, lambda: self._read_sync(key, max_bytes))
        if data is None:
            raise FileNotFoundError(f"no object {key!r} in bucket {self.bucket!r}")
        return data

    async def stat(self, key: str, *, content_type: str = "") -> Stored | None:
        """Size and content type from the server; sha256 from the object's metadata, which put()
        verified when it stored it ("" for an object put there by something else)."""
        check_key(key)
        st = await self._retry("stat", key, lambda: self._stat_sync(key))
        if st is None:
            return None
        url, expires_at = self._url(key)
        return Stored(key=key, url=url, bytes=int(st.size), sha256=(st.metadata or {}).get("x-amz-meta-sha256", ""),
                      content_type=st.content_type or content_type or "application/octet-stream",
                      bucket=self.bucket, path=None, expires_at=expires_at)

    async def close(self) -> None:
        self._http.clear()

    async def check(self, *, deadline_s: float = 30.0) -> None:
        """One cheap call at start (HEAD of the bucket): is the endpoint there, and does it take the
        credentials? Refused credentials or a bucket that cannot be ours fail at once, naming the
        settings; an endpoint that does not answer is waited for (a progress line per retry) up to
        `deadline_s`, since in a compose file S3 may start after the services."""
        where = f"S3 at {self.endpoint}"
        give_up = time.monotonic() + deadline_s
        attempt = 0
        while True:
            try:
                # A frozen server would hold the call for the whole read timeout: each attempt is
                # bounded by what is left of the deadline (the thread ends at its own read timeout).
                left = max(1.0, give_up - time.monotonic())
                await asyncio.wait_for(asyncio.to_thread(self._client.bucket_exists, self.bucket), min(left, 10.0))
                return
            except Exception as exc:  # noqa: BLE001 - classified right below
                status = _status_of(exc)
                if status in (401, 403):
                    raise StoreRejectedError(
                        f"{where} refused the credentials for bucket {self.bucket!r} ({_describe(exc)}): check "
                        "SIMREEL_S3_ACCESS_KEY and SIMREEL_S3_SECRET_KEY") from None
                if isinstance(exc, urllib3.exceptions.SSLError):
                    raise StoreRejectedError(
                        f"{where}: TLS failed ({type(exc).__name__}): check SIMREEL_S3_ENDPOINT / SIMREEL_S3_SECURE "
                        "and the server's certificate (SSL_CERT_FILE)") from None
                if not is_retryable(exc):
                    raise StoreRejectedError(
                        f"{where} refused a HEAD of bucket {self.bucket!r} ({_describe(exc)}): check "
                        "SIMREEL_S3_ENDPOINT, SIMREEL_S3_REGION and SIMREEL_S3_BUCKET") from None
                attempt += 1
                if time.monotonic() >= give_up:
                    raise StoreRejectedError(
                        f"cannot reach {where} within {deadline_s:.0f}s ({_cause(exc)}): check "
                        "SIMREEL_S3_ENDPOINT") from None
                _log.warning(f"waiting for {where} ({_cause(exc)}), retry {attempt}", endpoint=self.endpoint,
                             attempt=attempt)
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 5.0, max(0.0, give_up - time.monotonic())))

    # -- blocking parts (worker thread) -------------------------------------------------------

    def _ensure_bucket_sync(self) -> None:
        """Create the bucket if missing. Several uploaders may race here: losing the race
        (BucketAlreadyOwnedByYou / BucketAlreadyExists) is success."""
        if self._bucket_ready:
            return
        if not self._client.bucket_exists(self.bucket):
            try:
                self._client.make_bucket(self.bucket)
                _log.info("bucket created", endpoint=self.endpoint, bucket=self.bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._bucket_ready = True

    def _put_sync(
        self, key: str, src: Path, content_type: str, meta: dict[str, str], digest: str
    ) -> tuple[str, int]:
        self._ensure_bucket_sync()
        with open(src, "rb") as f:
            reader = _HashingReader(f)
            result = self._client.put_object(
                self.bucket,
                key,
                reader,
                length=-1,
                part_size=self.part_size,
                content_type=content_type,
                metadata=meta,
            )
        if reader.sha.hexdigest() != digest:
            self._client.remove_object(self.bucket, key)
            raise StoreError(
                f"sha256 of the bytes sent for {key!r} is {reader.sha.hexdigest()}, expected "
                f"{digest} (the caller's sha256 is wrong, or {src} changed during the upload); "
                "object removed"
            )
        stat = self._client.stat_object(self.bucket, key)
        remote_sha = (stat.metadata or {}).get("x-amz-meta-sha256")
        if stat.size != reader.bytes or remote_sha != digest:
            raise _VerifyError(
                f"verification of {key!r} failed: server has {stat.size} bytes / sha256 "
                f"{remote_sha}, sent {reader.bytes} bytes / {digest}"
            )
        return (result.etag or "").strip('"'), reader.bytes

    def _stat_sync(self, key: str):
        try:
            return self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise

    def _read_sync(self, key: str, max_bytes: int) -> bytes | None:
        try:
            resp = self._client.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise
        try:
            size = int(resp.headers.get("content-length") or 0)
            if size > max_bytes:
                raise StoreError(f"{key!r} is {size} bytes; at most {max_bytes} are read")
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def _delete_sync(self, key: str) -> bool:
        if self._stat_sync(key) is None:
            return False
        self._client.remove_object(self.bucket, key)  # S3 DELETE is itself idempotent
        return True

    # -- retry --------------------------------------------------------------------------------

    async def _retry(self, op: str, key: str, fn):
        for attempt in range(self.retries + 1):
            try:
                return await asyncio.to_thread(fn)
            except StoreError as exc:
                if not isinstance(exc, _VerifyError) or attempt == self.retries:
                    raise
                err = exc
            except FileNotFoundError as exc:  # the source vanished between hashing and upload
                raise SourceNotFoundError(f"cannot store {key!r}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - classified right below
                if not is_retryable(exc):
                    raise StoreRejectedError(
                        f"S3 {op} of {key!r} in bucket {self.bucket!r} at {self.endpoint} failed: "
                        f"{_describe(exc)}"
                    ) from exc
                if attempt == self.retries:
                    raise StoreError(
                        f"S3 {op} of {key!r} in bucket {self.bucket!r} at {self.endpoint} failed "
                        f"after {attempt + 1} attempts: {_describe(exc)}"
                    ) from exc
                err = exc
            delay = min(self.backoff_s * 2**attempt, _MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
            self.retried += 1
            _log.warning(
                f"waiting for S3 at {self.endpoint} ({_cause(err)}), retry {attempt + 1}",
                op=op,
                endpoint=self.endpoint,
                bucket=self.bucket,
                key=key,
                attempt=attempt + 1,
                of=self.retries + 1,
                error=_describe(err),
                retry_in_s=round(delay, 2),
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")
