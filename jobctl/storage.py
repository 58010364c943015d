"""Object storage for images and other files: a local directory (default) or S3 / S3-compatible.

`open_storage("file:///srv/jobctl/storage")` or `open_storage("s3://bucket/prefix", endpoint_url)`.
Keys are relative POSIX paths under one rule, `key_problem` (used by the enqueue validator and by
`check_key` at run time): never empty, absolute, `.`/`..`, backslashes, NUL or control characters,
a drive-like first part, or a trailing `/`; each part at most 255 UTF-8 bytes (NAME_MAX) and the
whole key at most 1024 (S3's limit). The local backend also checks that the resolved real path
(symlinks followed) stays inside the base. Objects are streamed in chunks, never held whole in
memory; `get(..., max_bytes=N)` refuses a larger object (`TooLarge`) before writing more than N bytes.
A key that can never be written (a directory in the way, a name the filesystem refuses) is a
PermanentFailure, not an error worth retrying.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from jobctl.errors import PermanentFailure

Source = Path | bytes
CHUNK = 1024 * 1024
MAX_PART_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, APFS, NTFS (in UTF-16 units there)
MAX_KEY_BYTES = 1024  # S3's object key limit
# errors that retrying can never cure: the key names a directory, crosses a file, or is too long
_PERMANENT_ERRNOS = {errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTEMPTY}


class TooLarge(PermanentFailure):
    """The stored object is above the size a caller accepts."""


class Storage(Protocol):
    """What processors need from a storage backend."""

    def get(self, key: str, dest: Path, max_bytes: int | None = None) -> None:
        """Stream `key` into the file `dest`; FileNotFoundError when missing, TooLarge above max_bytes."""

    def read(self, key: str) -> bytes:
        """The bytes of `key`; FileNotFoundError when it does not exist."""

    def put(self, key: str, src: Source, content_type: str = "application/octet-stream") -> None:
        """Store a file or bytes under `key`, replacing it atomically."""

    def exists(self, key: str) -> bool:
        """Whether `key` exists."""

    def delete(self, key: str) -> None:
        """Remove `key`; no error when it does not exist."""


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid storage key, or None: the one rule of enqueue and run time."""
    if not key:
        return "must not be empty"
    if key.startswith("/"):
        return "must be relative, not start with '/'"
    if "\\" in key:
        return "must use '/' as separator, not '\\'"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "must not contain NUL or control characters"
    parts = key.split("/")
    if ":" in parts[0]:
        return "must not start with a drive or scheme ('x:')"
    if any(part in ("..", ".") for part in parts):
        return "must not contain '.' or '..' parts"
    if key.endswith("/"):
        return "must name a file, not end with '/'"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES for part in parts):
        return f"each part must be at most {MAX_PART_BYTES} bytes (UTF-8)"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"must be at most {MAX_KEY_BYTES} bytes (UTF-8)"
    return None


def check_key(key: str) -> str:
    """The key as a normalised relative POSIX path, or PermanentFailure if it breaks `key_problem`'s rule."""
    problem = key_problem(key)
    if problem:
        raise PermanentFailure(f"invalid storage key {key!r}: {problem}")
    return str(PurePosixPath(*[p for p in key.split("/") if p]))


def copy_limited(chunks: Iterable[bytes], out: IO[bytes], key: str, max_bytes: int | None) -> int:
    """Write `chunks` to `out`; TooLarge as soon as more than `max_bytes` arrived. Returns the size."""
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise TooLarge(too_large(key, None, max_bytes))
        out.write(chunk)
    return size


def too_large(key: str, size: int | None, max_bytes: int) -> str:
    """The refusal reason of an object above `max_bytes`."""
    what = f"{size:,} bytes" if size is not None else f"more than {max_bytes:,} bytes"
    return f"storage object {key!r} is {what}, above the {max_bytes:,}-byte limit"


def file_chunks(fh: IO[bytes]) -> Iterable[bytes]:
    """The file's content in CHUNK-sized pieces."""
    while chunk := fh.read(CHUNK):
        yield chunk


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

    def get(self, key: str, dest: Path, max_bytes: int | None = None) -> None:
        """Stream `key` into `dest`, refusing it above `max_bytes` (checked before and while copying)."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"storage key {key!r} does not exist")
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise TooLarge(too_large(key, size, max_bytes))
        with path.open("rb") as src, dest.open("wb") as out:
            copy_limited(file_chunks(src), out, key, max_bytes)

    def read(self, key: str) -> bytes:
        """The bytes of `key`."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"storage key {key!r} does not exist")
        return path.read_bytes()

    def put(self, key: str, src: Source, content_type: str = "application/octet-stream") -> None:
        """Write atomically: a temporary file in the same directory, then rename."""
        path = self.path(key)
        if path.is_dir():
            raise PermanentFailure(f"storage key {key!r} is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, src)
        except OSError as exc:
            if exc.errno in _PERMANENT_ERRNOS or isinstance(exc, FileExistsError):
                raise PermanentFailure(f"storage key {key!r} cannot be written: {exc.strerror}") from None
            raise

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
        full = f"{self.prefix}/{key}" if self.prefix else key
        if len(full.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise PermanentFailure(f"storage key {key!r} is above S3's {MAX_KEY_BYTES}-byte limit with its prefix")
        return full

    def _open(self, key: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"storage key {key!r} does not exist") from None

    def get(self, key: str, dest: Path, max_bytes: int | None = None) -> None:
        """Stream `key` into `dest`, refusing it above `max_bytes` (its length is checked first)."""
        obj = self._open(key)
        body = obj["Body"]
        try:
            size = obj.get("ContentLength")
            if max_bytes is not None and size is not None and size > max_bytes:
                raise TooLarge(too_large(key, size, max_bytes))
            with dest.open("wb") as out:
                copy_limited(body.iter_chunks(CHUNK), out, key, max_bytes)
        finally:
            body.close()

    def read(self, key: str) -> bytes:
        """The bytes of `key`."""
        body: bytes = self._open(key)["Body"].read()
        return body

    def put(self, key: str, src: Source, content_type: str = "application/octet-stream") -> None:
        """Upload a file (streamed) or bytes."""
        target = {"Bucket": self.bucket, "Key": self.object_key(key), "ContentType": content_type}
        if isinstance(src, bytes):
            self.client.put_object(Body=src, **target)
            return
        with src.open("rb") as fh:
            self.client.put_object(Body=fh, **target)

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except self.client.exceptions.ClientError as exc:  # botocore's, reached through the client
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


def atomic_write(path: Path, src: Source) -> None:
    """Write `src` (bytes, or a file copied in chunks) to `path`: readers see the old or the whole new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".jobctl-", suffix=".tmp")  # short: any legal name fits
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(src, bytes):
                fh.write(src)
            else:
                with src.open("rb") as rd:
                    shutil.copyfileobj(rd, fh, CHUNK)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
