"""Charts drawn on the server as SVG: no chart library, no script, nothing to fetch.

Every label is escaped; colours come from the stylesheet (classes ``s0``…``s3``), so the
Content-Security-Policy needs no inline style. Each chart has a ``<title>`` for screen
readers, and the page shows the same numbers in a table beside it.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from .i18n import Translator

WIDTH = 640


def _svg(height: int, title: str, body: list[str]) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
                  f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>')


def hbars(items: list[tuple[str, float]], tr: Translator, title: str, series: int = 0) -> Markup:
    """One horizontal bar per item, its value written at its end."""
    label_w, row = 180, 26
    top = max((v for _, v in items), default=0) or 1
    body = []
    for i, (label, value) in enumerate(items):
        y = i * row + 4
        w = (WIDTH - label_w - 90) * value / top
        body.append(f'<text class="label" x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(_cut(label))}</text>'
                    f'<rect class="s{series}" x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 8}"/>'
                    f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 15}">{escape(tr.number(value))}</text>')
    return _svg(max(len(items), 1) * row + 8, title, body)


def columns(labels: list[str], series: list[tuple[str, list[float]]], tr: Translator, title: str) -> Markup:
    """Grouped vertical bars: one group per label, one bar per series, a legend and a y axis."""
    left, bottom, top_pad, height = 56, 40, 28, 260
    plot_h = height - bottom - top_pad
    peak = max((v for _, values in series for v in values), default=0) or 1
    group = (WIDTH - left - 10) / max(len(labels), 1)
    bar = min(40.0, group * 0.8 / max(len(series), 1))
    body = []
    for k in range(5):  # the y axis: five ticks
        value = peak * k / 4
        y = top_pad + plot_h - plot_h * k / 4
        body.append(f'<line class="grid" x1="{left}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}"/>'
                    f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(tr.compact(value))}</text>')
    for i, label in enumerate(labels):
        x0 = left + i * group + (group - bar * len(series)) / 2
        for s, (_, values) in enumerate(series):
            h = plot_h * values[i] / peak
            body.append(f'<rect class="s{s}" x="{x0 + s * bar:.1f}" y="{top_pad + plot_h - h:.1f}" '
                        f'width="{bar - 2:.1f}" height="{h:.1f}"/>')
        body.append(f'<text class="tick" x="{left + i * group + group / 2:.1f}" y="{height - bottom + 16}" '
                    f'text-anchor="middle">{escape(_cut(label, 14))}</text>')
    for s, (name, _) in enumerate(series):  # the legend
        x = left + s * 170
        body.append(f'<rect class="s{s}" x="{x}" y="4" width="12" height="12"/>'
                    f'<text class="label" x="{x + 18}" y="15">{escape(name)}</text>')
    return _svg(height, title, body)


def stack(parts: list[tuple[str, float]], capacity: float, tr: Translator, title: str, unit: str) -> Markup:
    """One bar of parts side by side (weights, KV cache, overhead) against a capacity line."""
    height, y, bar_h = 86, 30, 26
    total = sum(v for _, v in parts)
    scale = (WIDTH - 20) / max(total, capacity, 1e-9)
    body, x = [], 10.0
    for s, (name, value) in enumerate(parts):
        w = value * scale
        body.append(f'<rect class="s{s}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}"/>'
                    f'<rect class="s{s}" x="{10 + s * 200}" y="4" width="12" height="12"/>'
                    f'<text class="label" x="{28 + s * 200}" y="15">{escape(name)} {escape(tr.number(value, 1))} '
                    f'{escape(unit)}</text>')
        x += w
    cx = 10 + capacity * scale
    anchor = "start" if cx < WIDTH / 2 else "end"
    body.append(f'<line class="capacity" x1="{cx:.1f}" x2="{cx:.1f}" y1="{y - 6}" y2="{y + bar_h + 6}"/>'
                f'<text class="tick" x="{min(cx, WIDTH - 10):.1f}" y="{y + bar_h + 22}" text-anchor="{anchor}">'
                f'{escape(tr.t("planner.usable"))} {escape(tr.number(capacity, 1))} {escape(unit)}</text>')
    return _svg(height, title, body)


def _cut(text: str, most: int = 24) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"
