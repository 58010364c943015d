"""process-image: fetch from storage, fit within maxWidth x maxHeight, re-encode without metadata.

Work is bounded in bytes, not only in pixels:

- the original is streamed from storage to a temporary file, never held in memory, and refused above
  `Settings.image_max_bytes` (`JOBCTL_IMAGE_MAX_BYTES`, 50 MiB by default) before more is copied;
- only JPEG, PNG, WebP and GIF are opened; an image above MAX_PIXELS (or one Pillow flags as a
  decompression bomb) is refused before its pixels are decoded;
- a large JPEG is decoded already reduced (`Image.draft`, DCT scaling by 1/2, 1/4 or 1/8) when the
  target is small, and the size it will decode to, in bytes for its mode (`decoded_bytes`), must be
  at most MAX_DECODED_BYTES; Pillow's resize then shrinks in steps (`reducing_gap`);
- the image is fitted before EXIF orientation is applied, so the rotation works on the small image,
  and no full-size copy is made when nothing needs to change.

The peak memory of the worst accepted image is measured by `python -m bench --only image-rss`.
Every metadata block except the colour profile is dropped. Refusals are PermanentFailure with the
reason (they land in the dead-letter store). Temporary files live under `<data_dir>/tmp` (which
cleanup-temp-files sweeps) and are removed even when the job fails.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from jobctl.context import JobContext
from jobctl.errors import PermanentFailure
from jobctl.payloads import ProcessImage
from jobctl.processors._common import parse

if TYPE_CHECKING:
    from PIL import Image

ACCEPTED = ("JPEG", "PNG", "WEBP", "GIF")
MAX_PIXELS = 40_000_000  # ~ 7700 x 5200; larger uploads are refused, not decoded
MAX_DECODED_BYTES = 96 * 2**20  # a 24-megapixel camera frame (6000 x 4000) at 4 bytes per pixel
# bytes per pixel in Pillow's memory by mode: 1-band 8-bit modes take 1, 16-bit ones 2, others 4
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
OPTIMIZE_MAX_PIXELS = 4_000_000  # outputs above this are encoded without the whole-image optimize pass
ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
ORIENTATION = 0x0112
OUTPUT = {  # extension -> (Pillow format, content type)
    ".jpg": ("JPEG", "image/jpeg"),
    ".jpeg": ("JPEG", "image/jpeg"),
    ".png": ("PNG", "image/png"),
    ".webp": ("WEBP", "image/webp"),
    ".gif": ("GIF", "image/gif"),
}


def output_format(target: str) -> tuple[str, str]:
    """(Pillow format, content type) from the target key's extension."""
    ext = PurePosixPath(target).suffix.lower()
    if ext not in OUTPUT:
        raise PermanentFailure(f"targetPath {target!r} must end in one of {', '.join(sorted(OUTPUT))}")
    return OUTPUT[ext]


def process_image(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Resize one stored image into another key; progress 10/50/70/90/100."""
    p = parse(ProcessImage, payload)
    fmt, content_type = output_format(p.targetPath)
    tmp_root = ctx.settings.data_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="image-", dir=tmp_root) as tmp:
        src, dest = Path(tmp) / "original", Path(tmp) / f"out{PurePosixPath(p.targetPath).suffix.lower()}"
        try:
            ctx.services.storage.get(p.originalPath, src, max_bytes=ctx.settings.image_max_bytes)
        except FileNotFoundError:
            raise PermanentFailure(f"original {p.originalPath!r} is not in storage") from None
        ctx.progress(10)
        out = resized(src, p.maxWidth, p.maxHeight, ctx.progress)
        try:
            ctx.progress(70)
            encode(out, dest, fmt, p.quality)
            width, height = out.size
        finally:
            out.close()
        ctx.progress(90)
        ctx.services.storage.put(p.targetPath, dest, content_type)
        size = dest.stat().st_size
    ctx.progress(100)
    return {"targetPath": p.targetPath, "width": width, "height": height, "bytes": size}


def resized(path: Path, max_width: int, max_height: int, progress: Callable[[int], None] | None = None) -> Image.Image:
    """The image at `path`, decoded within the byte budget, fitted to the box and uprighted."""
    im, orientation, size, box = load(path, max_width, max_height)
    if progress:
        progress(50)
    try:
        return fit(im, orientation, size, box)
    except (OSError, ValueError, MemoryError) as exc:
        im.close()
        raise PermanentFailure(f"unreadable image: {exc}") from None


def decoded_bytes(mode: str, width: int, height: int, fmt: str | None = None) -> int:
    """Bytes Pillow holds for a decoded `mode` image of width x height (GIF frames may become RGBA)."""
    per_pixel = 4 if fmt == "GIF" else _BYTES_PER_PIXEL.get(mode, 4)
    return width * height * per_pixel


def target_size(size: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int] | None:
    """The size fitting the box with the aspect ratio kept (Pillow's thumbnail rule); None if it fits."""
    width, height = size
    x, y = max_width, max_height
    if x >= width and y >= height:
        return None
    aspect = width / height
    if x / y >= aspect:
        return _round_aspect(y * aspect, lambda n: abs(aspect - n / y)), y
    return x, _round_aspect(x / aspect, lambda n: 0 if n == 0 else abs(aspect - x / n))


def _round_aspect(number: float, key: Callable[[int], float]) -> int:
    return max(min(math.floor(number), math.ceil(number), key=key), 1)


Loaded = tuple["Image.Image", int, tuple[int, int] | None, tuple[float, float, float, float] | None]


def load(path: Path, max_width: int, max_height: int) -> Loaded:
    """Open, refuse bombs and over-budget images, decode (a JPEG reduced): (image, orientation, size, box).

    `size` is the fitted size (None: it already fits), `box` the source region of a drafted JPEG.
    """
    from PIL import Image

    im: Image.Image | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path, formats=ACCEPTED)
            if im.width * im.height > MAX_PIXELS:
                raise PermanentFailure(f"image is {im.width}x{im.height}, above the {MAX_PIXELS}-pixel limit")
            box = None
            if im.format == "JPEG":  # its EXIF is in the header: orientation and size before decoding
                orientation, size = oriented(im, max_width, max_height)
                if size is not None:
                    res = im.draft(None, size)  # 1/2, 1/4 or 1/8 scale, the decoded size staying >= size
                    box = res[1] if res else None
            need = decoded_bytes(im.mode, im.width, im.height, im.format)
            if need > MAX_DECODED_BYTES:
                raise PermanentFailure(
                    f"image is {im.width}x{im.height} {im.mode}: {need:,} bytes decoded, above the "
                    f"{MAX_DECODED_BYTES:,}-byte limit"
                )
            im.load()
            if im.format != "JPEG":  # a PNG's eXIf chunk may follow its pixels: getexif() decodes them
                orientation, size = oriented(im, max_width, max_height)
    except PermanentFailure:
        _close(im)
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        _close(im)
        raise PermanentFailure(f"image refused as a decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        raise PermanentFailure(f"not an image in an accepted format ({', '.join(ACCEPTED)})") from None
    except (OSError, SyntaxError, ValueError, MemoryError) as exc:
        _close(im)
        raise PermanentFailure(f"unreadable image: {exc}") from None
    return im, orientation, size, box


def oriented(im: Image.Image, max_width: int, max_height: int) -> tuple[int, tuple[int, int] | None]:
    """(EXIF orientation, the stored image's fitted size): fit as displayed, resize stored, rotate the result."""
    orientation = int(im.getexif().get(ORIENTATION) or 1)
    if orientation not in ROTATED:
        return orientation, target_size(im.size, max_width, max_height)
    upright = target_size((im.height, im.width), max_width, max_height)
    return orientation, (upright[1], upright[0]) if upright else None


def fit(
    im: Image.Image, orientation: int, size: tuple[int, int] | None, box: tuple[float, float, float, float] | None
) -> Image.Image:
    """Resized to `size` (from the drafted region `box`), then upright (EXIF orientation applied).

    `im` is closed once a resized copy exists, so at most two full-size images are alive at once."""
    from PIL import ImageOps

    out = im
    if size is not None and (size != im.size or box is not None):
        out = shrink(im, size, box)
    if orientation != 1:
        ImageOps.exif_transpose(out, in_place=True)  # a copy of the (small) image, then the old one freed
    return out


def shrink(im: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float] | None) -> Image.Image:
    """Resized with LANCZOS after a cheap integer reduce; `im` is closed once its successor exists.

    Pillow's resize of an RGBA or LA image converts a full-size premultiplied copy while the
    original lives, and then skips `reducing_gap`; converting here first, and closing the original,
    keeps at most two full-size images alive and lets the reduce happen.
    """
    from PIL import Image

    mode = im.mode
    premultiplied = {"RGBA": "RGBa", "LA": "La"}.get(mode)
    work = im
    if premultiplied:
        work = im.convert(premultiplied)
        im.close()
    small = work.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=2.0)
    work.close()
    if premultiplied:
        straight = small.convert(mode)
        small.close()
        small = straight
    return small


def encode(im: Image.Image, dest: Path, fmt: str, quality: int) -> None:
    """Save with no EXIF/XMP/text metadata (the ICC colour profile is kept so colours stay right)."""
    icc = im.info.get("icc_profile")
    im.info = {}
    if fmt == "JPEG" and im.mode not in ("RGB", "L"):
        im = flatten(im)
    elif fmt in ("PNG", "WEBP") and im.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        im = im.convert("RGBA")
    options: dict[str, Any] = {"quality": quality}
    if icc:
        options["icc_profile"] = icc
    small = im.width * im.height <= OPTIMIZE_MAX_PIXELS
    if fmt == "JPEG":
        options["optimize"] = small  # libjpeg then keeps every DCT coefficient: ~3 bytes a pixel more
    if fmt == "PNG":
        options = {"optimize": small, **({"icc_profile": icc} if icc else {})}
    im.save(dest, format=fmt, **options)


def flatten(im: Image.Image) -> Image.Image:
    """RGB for JPEG: transparent areas become white instead of black."""
    from PIL import Image

    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _close(im: Image.Image | None) -> None:
    if im is not None:
        im.close()
