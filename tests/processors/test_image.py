"""process-image with real Pillow images on local storage and on S3 (moto server)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from localservices import Ctx
from PIL import Image

from jobctl.config import Settings
from jobctl.errors import ConfigError, PermanentFailure
from jobctl.processors import image
from jobctl.processors.image import process_image
from jobctl.services import Services

ORIENTATION, MAKE, GPS_IFD = 0x0112, 0x010F, 0x8825


def jpeg_rotated(width: int = 400, height: int = 300) -> bytes:
    """A landscape JPEG whose EXIF says "rotate 90° clockwise to display", with camera and GPS tags."""
    im = Image.new("RGB", (width, height), (200, 30, 30))
    im.paste((30, 30, 200), (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "SpyCam"
    exif.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 24.0)
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def encoded(fmt: str, size: tuple[int, int], mode: str = "RGB", **options: Any) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, fmt, **options)
    return buf.getvalue()


JOB = {"userId": "u1", "originalPath": "uploads/u1/in.jpg", "targetPath": "thumbs/u1/out.jpg",
       "maxWidth": 150, "maxHeight": 150, "quality": 80}


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    if request.param == "local":
        return make_settings()
    bucket = request.getfixturevalue("s3_bucket")
    return make_settings(JOBCTL_STORAGE_URL=f"s3://{bucket}/media",
                         JOBCTL_S3_ENDPOINT_URL=request.getfixturevalue("moto_endpoint"))


def run(settings: Settings, ctx: Ctx, original: bytes, **job: Any) -> dict[str, Any]:
    payload = {**JOB, **job}
    Services(settings).storage.put(payload["originalPath"], original, "application/octet-stream")
    return process_image(payload, ctx(settings, "process-image"))


def stored(settings: Settings, key: str) -> Image.Image:
    return Image.open(io.BytesIO(Services(settings).storage.read(key)))


def test_exif_rotated_jpeg_is_uprighted_fitted_and_stripped(settings: Settings, make_ctx: Ctx) -> None:
    result = run(settings, make_ctx, jpeg_rotated())
    assert result == {"targetPath": "thumbs/u1/out.jpg", "width": 112, "height": 150,
                      "bytes": result["bytes"]}
    out = stored(settings, "thumbs/u1/out.jpg")
    assert out.format == "JPEG" and out.size == (112, 150)
    assert dict(out.getexif()) == {} and "exif" not in out.info
    assert out.getpixel((56, 5))[2] > 150 and out.getpixel((56, 145))[0] > 150  # blue half now on top
    assert make_ctx.progress == [10, 50, 70, 90, 100]
    assert list((settings.data_dir / "tmp").iterdir()) == []


def test_png_to_webp_keeps_aspect_and_never_enlarges(settings: Settings, make_ctx: Ctx) -> None:
    original = encoded("PNG", (1000, 250), "RGBA")
    result = run(settings, make_ctx, original, originalPath="a.png", targetPath="b.webp", maxWidth=500,
                 maxHeight=500)
    assert (result["width"], result["height"]) == (500, 125)
    assert stored(settings, "b.webp").format == "WEBP"
    small = run(settings, make_ctx, encoded("GIF", (40, 30), "P"), originalPath="s.gif", targetPath="s.png")
    assert (small["width"], small["height"]) == (40, 30)


def test_transparent_png_to_jpeg_is_flattened_on_white(make_settings: Callable[..., Settings],
                                                       make_ctx: Ctx) -> None:
    settings = make_settings()
    result = run(settings, make_ctx, encoded("PNG", (100, 100), "RGBA"), originalPath="t.png")
    assert result["width"] == 100
    assert stored(settings, "thumbs/u1/out.jpg").getpixel((50, 50)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("original", "reason"),
    [
        (b"%PDF-1.4 definitely not an image", "not an image in an accepted format"),
        (encoded("BMP", (10, 10)), "not an image in an accepted format"),
        (encoded("PNG", (8000, 8000), "1"), "above the 40000000-pixel limit"),
        (encoded("PNG", (50, 50))[:60], "unreadable image"),
    ],
    ids=["pdf", "bmp", "bomb", "truncated"],
)
def test_refused_inputs_are_permanent_and_leave_no_temp_files(
    original: bytes, reason: str, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    settings = make_settings()
    with pytest.raises(PermanentFailure, match=reason):
        run(settings, make_ctx, original)
    assert list((settings.data_dir / "tmp").iterdir()) == []
    assert not Services(settings).storage.exists("thumbs/u1/out.jpg")


def test_pillow_decompression_bomb_warning_is_an_error(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(PermanentFailure, match="decompression bomb"):
        run(make_settings(), make_ctx, encoded("PNG", (1100, 1000), "1"))


@pytest.mark.parametrize(
    ("job", "reason"),
    [
        ({"targetPath": "out.tiff"}, "must end in one of"),
        ({"originalPath": "../../etc/passwd"}, "originalPath"),
        ({"maxWidth": 0}, "maxWidth"),
    ],
)
def test_invalid_jobs_are_permanent(
    job: dict[str, Any], reason: str, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    with pytest.raises(PermanentFailure, match=reason):
        process_image({**JOB, **job}, make_ctx(make_settings(), "process-image"))


def test_missing_original_is_permanent(make_settings: Callable[..., Settings], make_ctx: Ctx) -> None:
    with pytest.raises(PermanentFailure, match="not in storage"):
        process_image(JOB, make_ctx(make_settings(), "process-image"))


# --- bounded work: bytes, not only pixels (issue 12) -----------------------------------------


def png16_rgba(width: int, height: int) -> bytes:
    """A black 16-bit RGBA PNG built chunk by chunk (Pillow cannot write one): tiny file, huge decode."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 8)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_the_issue_png_is_refused_by_decoded_bytes_before_decoding(make_settings: Callable[..., Settings],
                                                                    make_ctx: Ctx) -> None:
    original = png16_rgba(6300, 6300)  # the report's file: ~308 KB, 39.7 MP (under the pixel limit)
    assert len(original) < 400_000 and image.MAX_PIXELS > 6300 * 6300
    settings = make_settings()
    with pytest.raises(PermanentFailure, match=r"6300x6300 RGBA: 158,760,000 bytes decoded, above the "):
        run(settings, make_ctx, original, originalPath="big.png")
    assert make_ctx.progress == [10]
    assert list((settings.data_dir / "tmp").iterdir()) == []


def test_over_budget_png_is_refused_without_decoding_a_pixel(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    from PIL import ImageFile

    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)  # records, then does the real decode
    monkeypatch.setattr(image, "MAX_DECODED_BYTES", 1_000_000)
    # no eXIf chunk before the pixels: getexif() of such a PNG decodes them to look for one after
    with pytest.raises(PermanentFailure, match="1000x1000 RGBA"):
        run(make_settings(), make_ctx, encoded("PNG", (1000, 1000), "RGBA"), originalPath="e.png")
    assert decoded == []


@pytest.mark.parametrize(("mode", "accepted"), [("1", True), ("L", True), ("P", True), ("I;16", False),
                                                ("LA", False), ("RGB", False), ("RGBA", False)])
def test_decoded_budget_counts_bytes_per_pixel_of_the_mode(
    mode: str, accepted: bool, monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings],
    make_ctx: Ctx
) -> None:
    monkeypatch.setattr(image, "MAX_DECODED_BYTES", 1_000_000)  # 1000x1000: 1 MB at 1 byte/px, 2-4 MB above
    settings = make_settings()
    original = encoded("PNG", (1000, 1000), mode)
    if accepted:
        assert run(settings, make_ctx, original, originalPath="m.png", targetPath="m.png")["width"] == 150
    else:
        with pytest.raises(PermanentFailure, match=f"1000x1000 {mode}: .* bytes decoded"):
            run(settings, make_ctx, original, originalPath="m.png", targetPath="m.png")


def test_large_jpeg_is_decoded_reduced_when_the_target_is_small(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], make_ctx: Ctx, tmp_path: Path
) -> None:
    original = encoded("JPEG", (4000, 3000), "RGB", quality=50)  # 48 MB decoded in full
    path = tmp_path / "big.jpg"
    path.write_bytes(original)
    im, _, size, _ = image.load(path, 150, 150)
    assert im.size == (500, 375) and size == (150, 113)  # decoded at 1/8 scale, not 4000x3000
    im.close()
    monkeypatch.setattr(image, "MAX_DECODED_BYTES", 10_000_000)
    settings = make_settings()
    result = run(settings, make_ctx, original, originalPath="big.jpg")
    assert (result["width"], result["height"]) == (150, 113)
    with pytest.raises(PermanentFailure, match="4000x3000 RGB: 48,000,000 bytes decoded"):
        run(settings, make_ctx, original, originalPath="big.jpg", maxWidth=4000, maxHeight=3000)


def test_reduced_jpeg_keeps_orientation_and_quality(make_settings: Callable[..., Settings],
                                                    make_ctx: Ctx) -> None:
    settings = make_settings()
    result = run(settings, make_ctx, jpeg_rotated(3200, 2400), maxWidth=300, maxHeight=300)
    assert (result["width"], result["height"]) == (225, 300)
    out = stored(settings, "thumbs/u1/out.jpg")
    assert out.getpixel((112, 10))[2] > 150 and out.getpixel((112, 290))[0] > 150


def test_original_above_the_size_setting_is_refused_without_reading_it(settings: Settings,
                                                                       make_ctx: Ctx) -> None:
    original = jpeg_rotated()
    capped = replace(settings, image_max_bytes=len(original) - 1)
    with pytest.raises(PermanentFailure, match=rf"is {len(original):,} bytes, above the {len(original) - 1:,}-byte"):
        run(capped, make_ctx, original)
    assert list((settings.data_dir / "tmp").iterdir()) == []
    assert run(replace(settings, image_max_bytes=len(original)), make_ctx, original)["width"] == 112


def test_image_max_bytes_setting_from_the_environment(make_settings: Callable[..., Settings]) -> None:
    assert make_settings().image_max_bytes == 50 * 2**20
    assert make_settings(JOBCTL_IMAGE_MAX_BYTES="1000").image_max_bytes == 1000
    with pytest.raises(ConfigError, match="JOBCTL_IMAGE_MAX_BYTES must be a whole number of bytes"):
        make_settings(JOBCTL_IMAGE_MAX_BYTES="10MB")


@pytest.mark.parametrize("target", ["dir.jpg", "file.jpg/x.jpg", "a" * 252 + ".jpg"])
def test_unwritable_targets_are_permanent(target: str, make_settings: Callable[..., Settings],
                                          make_ctx: Ctx) -> None:
    settings = make_settings()
    storage = Services(settings).storage
    storage.put("dir.jpg/inside.txt", b"x")  # dir.jpg is a directory
    storage.put("file.jpg", b"x")  # file.jpg is a file, so file.jpg/x.jpg cannot exist
    long_ok = "a" * 250 + ".jpg"  # 254 bytes: legal, and written (a temp name built from it was not)
    assert run(settings, make_ctx, jpeg_rotated(), targetPath=long_ok)["width"] == 112
    with pytest.raises(PermanentFailure, match="storage key|each part must be at most 255 bytes"):
        run(settings, make_ctx, jpeg_rotated(), targetPath=target)


def test_refusals_reach_the_dead_letter_store_at_once_through_the_cli(redis_url: str, tmp_path: Path) -> None:
    """enqueue -> work --burst -> dlq list: each refusal is permanent (1 attempt of the queue's 2) with its reason."""
    import json
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "REDIS_"))} | {
        "JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(data), "JOBCTL_IMAGE_MAX_BYTES": "400000",
        "NO_COLOR": "1"}

    def jobctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jobctl", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    store = data / "storage"
    (store / "out" / "dir.jpg").mkdir(parents=True)
    noise = io.BytesIO()
    Image.frombytes("RGB", (600, 600), os.urandom(600 * 600 * 3)).save(noise, "JPEG", quality=95)
    assert len(noise.getvalue()) > 400_000
    (store / "big.jpg").write_bytes(noise.getvalue())
    (store / "huge.png").write_bytes(png16_rgba(6300, 6300))
    (store / "ok.jpg").write_bytes(jpeg_rotated())
    jobs = {"big.jpg": "out/a.jpg", "huge.png": "out/b.jpg", "ok.jpg": "out/dir.jpg"}
    for original, target in jobs.items():
        payload = {**JOB, "originalPath": original, "targetPath": target}
        assert jobctl("enqueue", "image-processing", "process-image", "--data", json.dumps(payload)).returncode == 0
    assert jobctl("enqueue", "image-processing", "process-image", "--data",
                  json.dumps({**JOB, "originalPath": "./in/ok.png"})).returncode == 2  # the one key rule
    work = jobctl("work", "image-processing", "--burst")
    assert work.returncode == 0, work.stderr
    entries = {e["data"]["originalPath"]: e for e in json.loads(jobctl("dlq", "list", "--json").stdout)}
    assert sorted(entries) == sorted(jobs)
    assert all(e["attempts"] == 1 for e in entries.values())
    assert "above the 400,000-byte limit" in entries["big.jpg"]["error"]
    assert "6300x6300 RGBA: 158,760,000 bytes decoded" in entries["huge.png"]["error"]
    assert "'out/dir.jpg' is a directory" in entries["ok.jpg"]["error"]
