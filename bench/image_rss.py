"""Peak memory of process-image: each case in a fresh subprocess, its peak RSS (VmHWM in /proc).

    python -m bench --only image-rss        (or: python -m bench.image_rss)

The originals are made here (in the parent) and placed in a local storage directory; a child
process imports jobctl and Pillow, records its peak RSS so far (the baseline), runs
`process_image` once and reports its peak RSS after (`VmHWM`, which only grows; `ru_maxrss` is not
used because Linux carries the parent's peak into a child across fork and exec). The worst
accepted images sit just under MAX_DECODED_BYTES: an RGBA PNG with an EXIF rotation, to a JPEG
target (so it is also flattened on white), not resized, slightly resized, and made a thumbnail;
beside them a 24-megapixel JPEG (decoded reduced for a small target, in full for a large one), and
the issue's 16-bit RGBA PNG of 6300x6300 (refused before decoding). No Redis is used.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.system import ROOT, Round

KEY_PREFIX = "image_rss"


@dataclass(frozen=True)
class Case:
    """One original and one job over it."""

    key: str
    label: str
    original: str  # the generator's name in ORIGINALS
    max_wh: int
    target: str = "out.jpg"


def worst_side() -> int:
    """The side of the largest square RGBA image MAX_DECODED_BYTES accepts."""
    from jobctl.processors.image import MAX_DECODED_BYTES

    return math.isqrt(MAX_DECODED_BYTES // 4)


def png_rgba_rotated() -> bytes:
    """An RGBA PNG at the decoded-bytes limit, EXIF orientation 6 (rotate on display), half transparent."""
    from PIL import Image

    side = worst_side()
    im = Image.new("RGBA", (side, side), (200, 40, 40, 255))
    im.paste((40, 40, 200, 0), (0, 0, side // 2, side))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes(), compress_level=1)
    return buf.getvalue()


def jpeg_24mp() -> bytes:
    """A 6000x4000 camera-sized JPEG."""
    from PIL import Image

    im = Image.new("RGB", (6000, 4000), (90, 140, 60))
    im.paste((240, 240, 240), (0, 0, 3000, 2000))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png16_issue() -> bytes:
    """The issue's file: a 16-bit RGBA PNG of 6300x6300, ~308 KB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + 6300 * 8)
    body = b"".join(z.compress(row) for _ in range(6300)) + z.flush()
    head = struct.pack(">IIBBBBB", 6300, 6300, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def tiny_png() -> bytes:
    """A 16x16 PNG: the child's cost of importing and running at all."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "PNG")
    return buf.getvalue()


ORIGINALS = {"rgba": png_rgba_rotated, "jpeg24": jpeg_24mp, "png16": png16_issue, "tiny": tiny_png}
CASES = (
    Case("tiny", "16x16 PNG (the process's own cost)", "tiny", 100),
    Case("rgba_full", "RGBA PNG at the byte limit, rotated, to JPEG, not resized", "rgba", 10_000),
    Case("rgba_near", "same, resized to 98 % (a second near-full image)", "rgba", 0),
    Case("rgba_thumb", "same, to a 300x300 thumbnail", "rgba", 300),
    Case("jpeg_thumb", "6000x4000 JPEG to 300x300 (decoded at 1/8)", "jpeg24", 300),
    Case("jpeg_full", "6000x4000 JPEG to 6000x6000 (decoded in full)", "jpeg24", 6000),
    Case("png16", "issue's 16-bit RGBA PNG 6300x6300 (refused)", "png16", 150),
)

CHILD = """
import json, sys, uuid
from pathlib import Path
from jobctl import config
from jobctl.context import JobContext
from jobctl.errors import PermanentFailure
from jobctl.processors.image import process_image
from jobctl.services import Services
import PIL.Image, PIL.ImageOps, PIL.PngImagePlugin, PIL.JpegImagePlugin

data, name, max_wh, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
settings = config.load(env={"JOBCTL_DATA_DIR": data, "HOME": data}, cwd=Path(data))
ctx = JobContext(uuid.uuid4().hex, "process-image", "image-processing", settings, Services(settings))
payload = {"userId": "bench", "originalPath": name, "targetPath": target, "maxWidth": max_wh,
           "maxHeight": max_wh, "quality": 85}
def hwm():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's across fork + exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
base = hwm()
try:
    out = {"result": process_image(payload, ctx)}
except PermanentFailure as exc:
    out = {"refused": exc.reason}
out["baseline_kib"] = base
out["peak_kib"] = hwm()
print(json.dumps(out))
"""


def run_case(case: Case, data: Path, sizes: dict[str, int]) -> dict[str, Any]:
    """Run one case in a fresh interpreter; its JSON report."""
    max_wh = case.max_wh or round(worst_side() * 0.98)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(data), f"{case.original}.bin", str(max_wh), case.target],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{case.key}: child exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["original_bytes"] = sizes[case.original]
    return report


def measure_all() -> list[tuple[Case, dict[str, Any]]]:
    """Every case once, the originals made once into one temporary storage."""
    with tempfile.TemporaryDirectory(prefix="jobctl-bench-image-") as tmp:
        data = Path(tmp)
        store = data / "storage"
        store.mkdir()
        sizes: dict[str, int] = {}
        for name, make in ORIGINALS.items():
            blob = make()
            (store / f"{name}.bin").write_bytes(blob)
            sizes[name] = len(blob)
        return [(case, run_case(case, data, sizes)) for case in CASES]


def figures(results: list[tuple[Case, dict[str, Any]]]) -> dict[str, float | None]:
    """Round figures: peak RSS per case (MiB) and the worst accepted one."""
    out: dict[str, float | None] = {}
    accepted = []
    for case, r in results:
        peak = r["peak_kib"] / 1024
        out[f"{KEY_PREFIX}_{case.key}_mib"] = peak
        if "result" in r and case.key != "tiny":
            accepted.append(peak)
    out[f"{KEY_PREFIX}_worst_mib"] = max(accepted) if accepted else None
    return out


def table(results: list[tuple[Case, dict[str, Any]]]) -> str:
    """Markdown: each case, its outcome and its peak RSS."""
    from jobctl.processors.image import MAX_DECODED_BYTES

    lines = [f"process-image peak RSS, one fresh process per case (MAX_DECODED_BYTES = {MAX_DECODED_BYTES:,}):", "",
             "| case | original | outcome | baseline RSS (MiB) | peak RSS (MiB) |", "|---|---:|---|---:|---:|"]
    for case, r in results:
        outcome = (f"{r['result']['width']}x{r['result']['height']}" if "result" in r
                   else f"refused: {r['refused'][:70]}")
        lines.append(f"| {case.label} | {r['original_bytes']:,} B | {outcome} | {r['baseline_kib'] / 1024:.0f} | "
                     f"{r['peak_kib'] / 1024:.0f} |")
    return "\n".join(lines) + "\n"


def measure_image_rss(rec: Round) -> None:
    """The bench task: figures into rec, the table as a note."""
    try:
        results = measure_all()
        rec.figures.update(figures(results))
        for case, r in results:  # outcomes only (figures vary by round): `--json` has every peak
            rec.notes.append(f"{case.label}: {'accepted' if 'result' in r else 'refused'}")
    except Exception as exc:  # the other tasks go on
        rec.error = f"{type(exc).__name__}: {exc}"


def main() -> None:
    """Standalone: print the table."""
    print(table(measure_all()))


if __name__ == "__main__":
    main()
