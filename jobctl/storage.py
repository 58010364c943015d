"""Object storage for images and other files: a local directory (default) or S3 / S3-compatible.

`open_storage("file:///srv/jobctl/storage")` or `open_storage("s3://bucket/prefix", endpoint_url)`.
Keys are relative POSIX paths; one that could escape its base is refused (`check_key`), and the
local backend also checks that the resolved real path (symlinks followed) stays inside the base.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from jobctl.errors import PermanentFailure

Source = Path | bytes


class Storage(Protocol):
    """What processors need from a storage backend."""

    def get(self, key: str, dest: Path) -> None:
        """Download `key` into the file `dest`; FileNotFoundError when it does not exist."""

    def read(self, key: str) -> bytes:
        """The bytes of `key`; FileNotFoundError when it does not exist."""

    def put(self, key: str, src: Source, content_type: str = "application/octet-stream") -> None:
        """Store a file or bytes under `key`, replacing it atomically."""

    def exists(self, key: str) -> bool:
        """Whether `key` exists."""

    def delete(self, key: str) -> None:
        """Remove `key`; no error when it does not exist."""


def check_key(key: str) -> str:
    """The key as a normalised relative POSIX path, or PermanentFailure if it could escape its base."""
    bad = (
        not key
        or "\x00" in key
        or "\\" in key
        or key.startswith("/")
        or ":" in key.split("/")[0]
        or any(part in ("..", ".") for part in key.split("/"))
    )
    if bad:
        raise PermanentFailure(f"invalid storage key {key!r}: must be relative and stay inside its base")
    return str(PurePosixPath(*[p for p in key.split("/") if p]))


class LocalStorage:
    """Files under one base directory."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.base)!r})"

    def path(self, key: str) -> Path:
        """The real path of `key`, refused when it resolves outside the base (e.g. via a symlink)."""
        base = self.base.resolve()
        target = (base / check_key(key)).resolve()
        if not target.is_relative_to(base) or target == base:
            raise PermanentFailure(f"storage key {key!r} resolves outside the storage base")
        return target

    def get(self, key: str, dest: Path) -> None:
        """Copy `key` into `dest`."""
        dest.write_bytes(self.read(key))

    def read(self, key: str) -> bytes:
        """The bytes of `key`."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"storage key {key!r} does not exist")
        return path.read_bytes()

    def put(self, key: str, src: Source, content_type: str = "application/octet-stream") -> None:
        """Write atomically: a temporary file in the same directory, then rename."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = src if isinstance(src, bytes) else src.read_bytes()
        atomic_write(path, data)

    def exists(self, key: str) -> bool:
        """Whether `key` is a file."""
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove `key` if present."""
        self.path(key).unlink(missing_ok=True)


class S3Storage:
    """Objects in one bucket under an optional prefix (AWS, MinIO, moto…)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    def __repr__(self) -> str:
        return f"S3Storage({self.bucket!r}, {self.prefix!r})"

    def object_key(self, key: str) -> str:
        """The full object key of `key` under the prefix."""
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str, dest: Path) -> None:
        """Download `key` into `dest`."""
        dest.write_bytes(self.read(key))

    def read(self, key: str) -> bytes:
        """The bytes of `key`."""
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"storage key {key!r} does not exist") from None
        body: bytes = obj["Body"].read()
        return body

    def put(self, key: str, src: Source, content_type: str = "application/octet-stream") -> None:
        """Upload a file or bytes."""
        data = src if isinstance(src, bytes) else src.read_bytes()
        self.client.put_object(
            Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=content_type
        )

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Remove the object (S3 deletes are idempotent)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))


def open_storage(url: str, endpoint_url: str | None = None) -> Storage:
    """The backend named by `url`: `file:///dir` or `s3://bucket/prefix`."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(Path(url2pathname(unquote(parts.path))))
    if parts.scheme == "s3" and parts.netloc:
        return S3Storage(parts.netloc, parts.path, endpoint_url)
    raise ValueError(f"unsupported storage URL {url!r}: use file:///dir or s3://bucket/prefix")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
