"""jobctl.storage: key checks, the local backend (symlink escapes) and S3 on moto's server."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from jobctl.errors import PermanentFailure
from jobctl.storage import LocalStorage, S3Storage, Storage, check_key, open_storage

BAD_KEYS = ["", "../x", "a/../../x", "/etc/passwd", "a\\..\\b", "a\x00b", "C:/x", "./a", "a/./b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_escaping_keys_are_refused(key: str) -> None:
    with pytest.raises(PermanentFailure, match="invalid storage key"):
        check_key(key)


def test_keys_are_normalised() -> None:
    assert check_key("users//u1/a.png") == "users/u1/a.png"


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return open_storage((tmp_path / "store").as_uri())
    bucket = request.getfixturevalue("s3_bucket")
    return open_storage(f"s3://{bucket}/pre/fix", request.getfixturevalue("moto_endpoint"))


def test_put_get_exists_delete(storage: Storage, tmp_path: Path) -> None:
    assert not storage.exists("u/a.txt")
    storage.put("u/a.txt", b"hello", "text/plain")
    assert storage.exists("u/a.txt")
    assert storage.read("u/a.txt") == b"hello"
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    storage.put("u/a.txt", src)
    dest = tmp_path / "dest.bin"
    storage.get("u/a.txt", dest)
    assert dest.read_bytes() == src.read_bytes()
    storage.delete("u/a.txt")
    storage.delete("u/a.txt")
    assert not storage.exists("u/a.txt")
    with pytest.raises(FileNotFoundError):
        storage.read("u/a.txt")


def test_s3_objects_live_under_the_prefix_with_content_type(s3_bucket: str, moto_endpoint: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}/pre/fix", moto_endpoint)
    assert isinstance(storage, S3Storage)
    storage.put("img/x.png", b"png", "image/png")
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    head = client.head_object(Bucket=s3_bucket, Key="pre/fix/img/x.png")
    assert head["ContentType"] == "image/png"


def test_local_symlink_out_of_base_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "store"
    outside = tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, base / "link")
    storage = LocalStorage(base)
    with pytest.raises(PermanentFailure, match="outside the storage base"):
        storage.read("link/secret.txt")
    with pytest.raises(PermanentFailure, match="outside the storage base"):
        storage.put("link/new.txt", b"x")
    assert not (outside / "new.txt").exists()


def test_local_put_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.put("a/b/c.bin", b"1" * 10_000)
    assert sorted(p.name for p in (tmp_path / "store" / "a" / "b").iterdir()) == ["c.bin"]


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported storage URL"):
        open_storage("ftp://host/dir")
