"""jobctl.storage: key checks, the local backend (symlink escapes) and S3 on moto's server."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from jobctl.errors import PermanentFailure, UsageError
from jobctl.payloads import validate
from jobctl.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    TooLarge,
    check_key,
    copy_limited,
    key_problem,
    open_storage,
)

BAD_KEYS = ["", "../x", "a/../../x", "/etc/passwd", "a\\..\\b", "a\x00b", "C:/x", "./a", "a/./b",
            "./in/ok.png", "out\\x.png", "dir/", "a\nb.png", "a\x1b[31m.png", "x" * 256, "d/" * 600 + "x",
            "\u00e9" * 128]
GOOD_KEYS = ["a.png", "users//u1/a.png", "x" * 255, "\u00e9" * 127, "d/" * 300 + "x", "..a/b..c", "a b/c:d.png"]


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


IMAGE_JOB = {"userId": "u1", "originalPath": "in.png", "targetPath": "out.png", "maxWidth": 10, "maxHeight": 10}


@pytest.mark.parametrize("key", BAD_KEYS + GOOD_KEYS)
def test_enqueue_validator_and_run_time_check_share_one_rule(key: str) -> None:
    problem = key_problem(key)
    assert (problem is None) == (key in GOOD_KEYS)
    for field in ("originalPath", "targetPath"):
        if problem is None:
            assert check_key(key)
            assert validate("process-image", {**IMAGE_JOB, field: key})[field] == key
        else:
            with pytest.raises(PermanentFailure, match="invalid storage key"):
                check_key(key)
            with pytest.raises(UsageError, match=f"{field}: (invalid storage key|String should have at least)"):
                validate("process-image", {**IMAGE_JOB, field: key})


def test_get_refuses_objects_above_max_bytes(storage: Storage, tmp_path: Path) -> None:
    storage.put("big.bin", b"x" * 5000)
    dest = tmp_path / "dest.bin"
    with pytest.raises(TooLarge, match="'big.bin' is 5,000 bytes, above the 4,999-byte limit"):
        storage.get("big.bin", dest, max_bytes=4999)
    assert not dest.exists() or dest.stat().st_size == 0
    storage.get("big.bin", dest, max_bytes=5000)
    assert dest.stat().st_size == 5000
    with pytest.raises(FileNotFoundError):
        storage.get("missing.bin", dest, max_bytes=10)


def test_copy_stops_at_the_limit_when_the_size_was_not_known(tmp_path: Path) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:  # an object whose length was not announced (or grew)
        for _ in range(10):
            sent.append(1)
            yield b"z" * 1000

    with (tmp_path / "out").open("wb") as out, pytest.raises(TooLarge, match="more than 2,500 bytes"):
        copy_limited(chunks(), out, "k", 2500)
    assert (tmp_path / "out").stat().st_size <= 2500 and len(sent) == 3  # stopped reading, too
    with (tmp_path / "out").open("wb") as out:
        assert copy_limited(chunks(), out, "k", 10_000) == 10_000


def test_get_and_put_stream_instead_of_holding_the_object(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(2**20) * 24)  # 24 MiB
    tracemalloc.start()
    try:
        storage.put("big.bin", src)
        storage.get("big.bin", tmp_path / "dest.bin", max_bytes=2**30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak {peak:,} bytes: the object was held in memory"
    assert (tmp_path / "dest.bin").read_bytes() == src.read_bytes()


def test_s3_get_streams_in_chunks(s3_bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    storage = open_storage(f"s3://{s3_bucket}/p", moto_endpoint)
    data = os.urandom(3 * 2**20 + 17)
    storage.put("big.bin", data)
    storage.get("big.bin", tmp_path / "dest.bin", max_bytes=len(data))
    assert (tmp_path / "dest.bin").read_bytes() == data


@pytest.mark.parametrize(("key", "reason"), [("dir", "is a directory"), ("file/x", "cannot be written")])
def test_local_put_onto_a_directory_or_through_a_file_is_permanent(key: str, reason: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.put("dir/inside.txt", b"x")
    storage.put("file", b"x")
    with pytest.raises(PermanentFailure, match=reason):
        storage.put(key, b"new")
    assert storage.read("dir/inside.txt") == b"x" and storage.read("file") == b"x"


def test_longest_legal_name_is_written(storage: Storage, tmp_path: Path) -> None:
    key = "d/" + "n" * 255  # a temporary name derived from the target used to exceed NAME_MAX
    storage.put(key, b"ok")
    assert storage.read(key) == b"ok"
    with pytest.raises(PermanentFailure, match="each part must be at most 255 bytes"):
        storage.put(key + "n", b"no")
