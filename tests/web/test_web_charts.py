"""The SVG throughput chart (pure): one bar pair per minute, heights in proportion to the busiest minute,
a title per bar, and markup that escapes its label."""

from __future__ import annotations

import re

from jobctl.web.charts import bars


def test_bars_scale_to_the_busiest_minute() -> None:
    svg = str(bars([(0, 0), (5, 5), (10, 0)], width=30, height=40, label="q <x>"))
    ok = [float(h) for h in re.findall(r'class="ok" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)]
    bad = [float(h) for h in re.findall(r'class="bad" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)]
    assert ok == [0.0, 20.0, 40.0] and bad == [0.0, 20.0, 0.0]
    assert re.findall(r"<title>([^<]+)</title>", svg) == ["2 min ago: 0 completed, 0 failed",
                                                         "1 min ago: 5 completed, 5 failed",
                                                         "this minute: 10 completed, 0 failed"]
    assert 'aria-label="q &lt;x&gt;"' in svg


def test_an_idle_hour_draws_empty_bars() -> None:
    svg = str(bars([(0, 0)] * 60))
    assert svg.count('class="ok"') == 60 and 'height="0.00"' in svg and "nan" not in svg
