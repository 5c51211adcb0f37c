"""Object storage: listing, reading and writing objects in S3 (boto3) or a local folder, behind one interface."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from nexgen_etl.core.settings import AwsCredentials, S3Settings

log = logging.getLogger("nexgen_etl")


@dataclass(frozen=True, order=True)
class ObjectInfo:
    """One object version as listed: what a batch plan freezes."""

    last_modified: datetime
    key: str
    etag: str
    size: int

    def to_dict(self) -> dict:
        return {"key": self.key, "etag": self.etag, "size": self.size,
                "last_modified": self.last_modified.isoformat()}

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectInfo":
        return cls(last_modified=datetime.fromisoformat(d["last_modified"]), key=d["key"],
                   etag=d["etag"], size=int(d["size"]))


class ObjectStore(Protocol):
    url: str

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def get_head_bytes(self, key: str, n: int) -> bytes: ...
    def iter_bytes(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]: ...
    def get_versioned(self, key: str) -> tuple[bytes, str] | None: ...
    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None,
                  if_none_match: bool = False) -> None: ...
    def copy(self, src_key: str, dst_key: str) -> None: ...
    def delete(self, keys: Iterable[str]) -> None: ...
    def spark_uri(self, key: str) -> str: ...


class PreconditionFailed(RuntimeError):
    """A conditional write refused: the object changed since it was read (if_match), or exists (if_none_match)."""


def _utc(ts: float | datetime) -> datetime:
    if isinstance(ts, datetime):
        return ts.astimezone(timezone.utc)
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class S3Store:
    """A bucket and key prefix reached with boto3; list calls are paginated, never one call per object."""

    def __init__(self, bucket: str, prefix: str, client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.url = f"s3://{bucket}/{self.prefix}"
        self.list_calls = 0
        self.page_size: int | None = None  # keys per ListObjectsV2 page; None: the service's (1000 on S3)

    def _full(self, key: str) -> str:
        return self.prefix + key

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        kwargs = {"Bucket": self.bucket, "Prefix": self._full(prefix)}
        if start_after:
            kwargs["StartAfter"] = self._full(start_after)
        if self.page_size:
            kwargs["PaginationConfig"] = {"PageSize": self.page_size}
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            self.list_calls += 1
            for o in page.get("Contents", []):
                yield ObjectInfo(last_modified=_utc(o["LastModified"]), key=o["Key"][len(self.prefix):],
                                 etag=o["ETag"].strip('"'), size=int(o["Size"]))

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            o = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return ObjectInfo(last_modified=_utc(o["LastModified"]), key=key, etag=o["ETag"].strip('"'),
                          size=int(o["ContentLength"]))

    def _get(self, key: str, **kwargs) -> tuple[bytes, str]:
        """One GET read whole, and its ETag. botocore retries a request until its response headers arrive; a body
        cut short or reset after that is not retried by it, so the GET is made again here."""
        for attempt in range(1, BODY_ATTEMPTS + 1):
            o = self.client.get_object(Bucket=self.bucket, Key=self._full(key), **kwargs)
            try:
                return o["Body"].read(), o["ETag"].strip('"')
            except _body_errors() as exc:
                _body_retry(f"{self.url}{key}", attempt, exc)
        raise AssertionError("unreachable")

    def get_bytes(self, key: str) -> bytes:
        return self._get(key)[0]

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and the ETag of exactly those bytes (one GET), or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            return self._get(key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def iter_bytes(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The whole object as a stream of chunks (bounded memory). A body cut short is resumed where it stopped,
        from the same object version (If-Match its ETag)."""
        offset, etag, attempt = 0, None, 1
        while True:
            kwargs = {"Range": f"bytes={offset}-", "IfMatch": f'"{etag}"'} if etag else {}
            o = self.client.get_object(Bucket=self.bucket, Key=self._full(key), **kwargs)
            etag = etag or o["ETag"].strip('"')
            try:
                for data in o["Body"].iter_chunks(chunk):
                    offset += len(data)
                    yield data
                return
            except _body_errors() as exc:
                _body_retry(f"{self.url}{key}", attempt, exc)
                attempt += 1

    def get_head_bytes(self, key: str, n: int) -> bytes:
        """The first n bytes (one ranged GET)."""
        return self._get(key, Range=f"bytes=0-{n - 1}")[0]

    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> None:
        """Write the object; with if_match only over that ETag, with if_none_match only where there is none (S3's
        conditional writes: the check and the write are one step on the server)."""
        from botocore.exceptions import ClientError

        kwargs = {}
        if if_match is not None:
            kwargs["IfMatch"] = f'"{if_match}"'
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if kwargs and code in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}:
                raise PreconditionFailed(f"{self.url}{key}: {code} (changed since it was read)") from None
            raise

    def upload_file(self, path: str | Path, key: str) -> None:
        self.client.upload_file(str(path), self.bucket, self._full(key))

    def copy(self, src_key: str, dst_key: str) -> None:
        self.client.copy_object(Bucket=self.bucket, Key=self._full(dst_key),
                                CopySource={"Bucket": self.bucket, "Key": self._full(src_key)})

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": self._full(k)} for k in keys[i:i + 1000]]
            resp = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            if resp.get("Errors"):
                raise OSError(f"delete failed in {self.url}: {resp['Errors'][:3]}")

    def spark_uri(self, key: str) -> str:
        return f"s3a://{self.bucket}/{self._full(key)}"


@functools.cache
def _body_errors() -> tuple[type[BaseException], ...]:
    """What breaking off inside a response body raises (imported on first use: LocalStore needs no botocore)."""
    from botocore.exceptions import ConnectionClosedError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError
    from urllib3.exceptions import ProtocolError

    return (ConnectionClosedError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError, ProtocolError,
            ConnectionError)


# a response body that breaks off is read again this many times in all (see S3Store._get)
BODY_ATTEMPTS = 5


def _body_retry(where: str, attempt: int, exc: BaseException) -> None:
    """After a body read failed: raise on the last attempt, else wait (exponential, capped) and log the retry."""
    if attempt >= BODY_ATTEMPTS:
        raise exc
    log.warning("s3: reading %s broke off (%s: %s); reading it again (attempt %d of %d)", where,
                type(exc).__name__, exc, attempt + 1, BODY_ATTEMPTS)
    time.sleep(min(0.2 * 2 ** attempt, 5.0))


def _lock_file(path: Path) -> Path:
    """A lock file for a local object, outside the store's folder (a listing must not see it)."""
    folder = Path(tempfile.gettempdir()) / "nexgen-locks"
    folder.mkdir(exist_ok=True)
    return folder / (hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest() + ".lock")


class LocalStore:
    """A local folder with the same interface (for the CLI and tests without S3)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.url = str(self.root) + "/"

    def _path(self, key: str) -> Path:
        return self.root / key

    def _info(self, path: Path) -> ObjectInfo:
        st = path.stat()
        md5 = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        return ObjectInfo(last_modified=_utc(st.st_mtime), key=path.relative_to(self.root).as_posix(),
                          etag=md5, size=st.st_size)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        # walk only the folder the prefix names (like S3's prefix listing; publishing lists one partition folder
        # at a time, and walking the whole root each time made a 1000-partition publish quadratic)
        base = self.root / prefix.rpartition("/")[0]
        if not base.is_dir():
            return
        keys = sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        for key in keys:  # in key order, as S3 lists
            if key.startswith(prefix) and (start_after is None or key > start_after):
                yield self._info(self._path(key))

    def head(self, key: str) -> ObjectInfo | None:
        p = self._path(key)
        return self._info(p) if p.is_file() else None

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def get_head_bytes(self, key: str, n: int) -> bytes:
        with open(self._path(key), "rb") as fh:
            return fh.read(n)

    def iter_bytes(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        with open(self._path(key), "rb") as fh:
            while data := fh.read(chunk):
                yield data

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        p = self._path(key)
        if not p.is_file():
            return None
        data = p.read_bytes()
        return data, hashlib.md5(data, usedforsecurity=False).hexdigest()

    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> None:
        """Write the file atomically; conditional writes check the current content's MD5 under a lock file."""
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        if if_match is None and not if_none_match:
            tmp.write_bytes(data)
            os.replace(tmp, p)
            return
        with open(_lock_file(p), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.get_versioned(key)
            if (if_none_match and current is not None) or (if_match is not None and (current is None or
                                                                                     current[1] != if_match)):
                raise PreconditionFailed(f"{self.url}{key}: changed since it was read")
            tmp.write_bytes(data)
            os.replace(tmp, p)

    def upload_file(self, path: str | Path, key: str) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, p)

    def copy(self, src_key: str, dst_key: str) -> None:
        dst = self._path(dst_key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(src_key), dst)

    def delete(self, keys: Iterable[str]) -> None:
        for k in keys:
            self._path(k).unlink(missing_ok=True)

    def spark_uri(self, key: str) -> str:
        # A Hadoop path string, not a percent-encoded URI: Hadoop does not decode it, so as_uri()'s
        # "period_date%3D2024-03-01" would name a folder that does not exist.
        return "file://" + self._path(key).as_posix()


def s3_client(s3: S3Settings, credentials: AwsCredentials | None = None):
    """A boto3 S3 client for the given endpoint/region, with adaptive retries for throttling."""
    import boto3
    from botocore.config import Config

    kwargs = {}
    if credentials is not None:
        kwargs = {"aws_access_key_id": credentials.access_key_id,
                  "aws_secret_access_key": credentials.secret_access_key.reveal(),
                  "aws_session_token": credentials.session_token.reveal() if credentials.session_token else None}
    attempts = int(os.environ.get("NEXGEN_S3_MAX_ATTEMPTS", "8"))
    cfg = Config(retries={"max_attempts": attempts, "mode": "adaptive"}, connect_timeout=10, read_timeout=60,
                 s3={"addressing_style": "path" if s3.path_style else "auto"})
    return boto3.session.Session(botocore_session=_botocore_session()).client(
        "s3", endpoint_url=s3.endpoint_url, region_name=s3.region, config=cfg, **kwargs)


_LOADER = None


def _botocore_session():
    """A new botocore session (its own credential chain, read now) sharing one model loader per process: a new
    loader reads and parses the S3 service model from disk again, ~0.15 s a client."""
    import botocore.loaders
    import botocore.session

    global _LOADER
    session = botocore.session.get_session()
    if _LOADER is None:
        _LOADER = botocore.loaders.create_loader(session.get_config_variable("data_path"))  # as botocore's own
    session.register_component("data_loader", _LOADER)
    return session


def open_store(url: str, client_factory=None) -> ObjectStore:
    """`s3://bucket/prefix` → S3Store (client from client_factory()), anything else → LocalStore."""
    parsed = urlparse(url)
    if parsed.scheme in {"s3", "s3a"}:
        if client_factory is None:
            raise ValueError(f"{url}: an S3 URL needs an S3 client")
        return S3Store(parsed.netloc, parsed.path.lstrip("/"), client_factory())
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme:
        raise ValueError(f"{url}: unsupported scheme {parsed.scheme!r} (use s3:// or a local path)")
    return LocalStore(url)


def spark_uri(url: str, key: str) -> str:
    """The Hadoop URI of a key under a location, as Spark reads it (s3:// → s3a://, a local path → file://)."""
    if url.startswith(("s3://", "s3a://")):
        return "s3a://" + url.split("://", 1)[1].rstrip("/") + "/" + key
    return LocalStore(url).spark_uri(key)
