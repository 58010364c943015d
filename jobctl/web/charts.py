"""Server-rendered SVG charts (no JavaScript): throughput per minute as stacked bars."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def bars(series: Sequence[tuple[int, int]], width: int = 180, height: int = 36, label: str = "") -> Markup:
    """Completed (green) and failed (red, on top) jobs per minute, oldest left; a title per bar for hovering."""
    n = max(1, len(series))
    top = max([c + f for c, f in series] + [1])
    w = width / n
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="{escape(label)}"><rect class="frame" x="0" y="0" width="{width}" height="{height}"/>']
    for i, (done, failed) in enumerate(series):
        x = i * w
        hd = height * done / top
        hf = height * failed / top
        ago = len(series) - 1 - i
        tip = f"{ago} min ago: {done} completed, {failed} failed" if ago else f"this minute: {done} completed, " \
              f"{failed} failed"
        parts.append(f'<g><title>{tip}</title>'
                     f'<rect class="ok" x="{x:.2f}" y="{height - hd:.2f}" width="{max(w - 0.5, 0.5):.2f}" '
                     f'height="{hd:.2f}"/>'
                     f'<rect class="bad" x="{x:.2f}" y="{height - hd - hf:.2f}" width="{max(w - 0.5, 0.5):.2f}" '
                     f'height="{hf:.2f}"/></g>')
    parts.append("</svg>")
    return Markup("".join(parts))
