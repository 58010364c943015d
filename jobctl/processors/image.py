"""process-image: fetch from storage, fit within maxWidth x maxHeight, re-encode without metadata.

Only JPEG, PNG, WebP and GIF are opened; an image above MAX_PIXELS (or one Pillow flags as a
decompression bomb) is refused before its pixels are decoded. EXIF orientation is applied, then
every metadata block except the colour profile is dropped. Temporary files live under
`<data_dir>/tmp` (which cleanup-temp-files sweeps) and are removed even when the job fails.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, ImageOps

from jobctl.context import JobContext
from jobctl.errors import PermanentFailure
from jobctl.payloads import ProcessImage
from jobctl.processors._common import parse

ACCEPTED = ("JPEG", "PNG", "WEBP", "GIF")
MAX_PIXELS = 40_000_000  # ~ 7700 x 5200; larger uploads are refused, not decoded
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
            ctx.services.storage.get(p.originalPath, src)
        except FileNotFoundError:
            raise PermanentFailure(f"original {p.originalPath!r} is not in storage") from None
        ctx.progress(10)
        with load(src) as im:
            ctx.progress(50)
            out = fit(im, p.maxWidth, p.maxHeight)
        ctx.progress(70)
        encode(out, dest, fmt, p.quality)
        ctx.progress(90)
        ctx.services.storage.put(p.targetPath, dest, content_type)
        size = dest.stat().st_size
    ctx.progress(100)
    return {"targetPath": p.targetPath, "width": out.width, "height": out.height, "bytes": size}


def load(path: Path) -> Image.Image:
    """Open an accepted format, refuse bombs, and decode the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path, formats=ACCEPTED)
            if im.width * im.height > MAX_PIXELS:
                im.close()
                raise PermanentFailure(f"image is {im.width}x{im.height}, above the {MAX_PIXELS}-pixel limit")
            im.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise PermanentFailure(f"image refused as a decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        raise PermanentFailure(f"not an image in an accepted format ({', '.join(ACCEPTED)})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PermanentFailure(f"unreadable image: {exc}") from None
    return im


def fit(im: Image.Image, max_width: int, max_height: int) -> Image.Image:
    """Upright (EXIF orientation applied) and fitted within the box, aspect ratio kept, never enlarged."""
    out = ImageOps.exif_transpose(im)
    if out is im:
        out = im.copy()
    out.thumbnail((max_width, max_height), Image.Resampling.LANCZOS)
    return out


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
    if fmt == "JPEG":
        options["optimize"] = True
    if fmt == "PNG":
        options = {"optimize": True, **({"icc_profile": icc} if icc else {})}
    im.save(dest, format=fmt, **options)


def flatten(im: Image.Image) -> Image.Image:
    """RGB for JPEG: transparent areas become white instead of black."""
    rgba = im.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
