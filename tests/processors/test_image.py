"""process-image with real Pillow images on local storage and on S3 (moto server)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from localservices import Ctx
from PIL import Image

from jobctl.config import Settings
from jobctl.errors import PermanentFailure
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
