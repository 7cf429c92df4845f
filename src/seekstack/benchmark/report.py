"""The HTML report of a run: the summary table, latency distributions and throughput over time.

Charts are inline SVG drawn here (a few rectangles and a polyline), so the report is one
self-contained file that opens offline — air-gapped sites included.
"""

from __future__ import annotations

import html
from typing import Any

from .stats import HEADLINE, lookup

W, H, PAD = 560, 220, 40


def _axis(title: str, x_label: str, y_label: str, x_max: float, y_max: float) -> list[str]:
    return [
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="30" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">{html.escape(x_label)}</text>',
        f'<text x="{PAD}" y="{H - PAD + 14}" text-anchor="middle">0</text>',
        f'<text x="{W - 10}" y="{H - PAD + 14}" text-anchor="end">{x_max:.4g}</text>',
        f'<text x="{PAD - 4}" y="34" text-anchor="end">{y_max:.4g}</text>',
        f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{html.escape(y_label)}</text>',
    ]


def histogram_svg(values: list[float], title: str, unit: str = "ms", bins: int = 30) -> str:
    if not values:
        return f"<p>{html.escape(title)}: no data</p>"
    top = max(values) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int(v / top * bins), bins - 1)] += 1
    peak = max(counts)
    width = (W - PAD - 10) / bins
    bars = [f'<rect x="{PAD + i * width:.1f}" y="{H - PAD - c / peak * (H - PAD - 30):.1f}" width="{width - 1:.1f}" '
            f'height="{c / peak * (H - PAD - 30):.1f}" fill="#4a7bd0"><title>{c}</title></rect>'
            for i, c in enumerate(counts) if c]
    return f'<svg width="{W}" height="{H}" font-size="11" font-family="sans-serif">' + \
        "".join(_axis(title, unit, "requests", top, peak) + bars) + "</svg>"


def line_svg(points: list[tuple[float, float]], title: str, x_label: str, y_label: str) -> str:
    if not points:
        return f"<p>{html.escape(title)}: no data</p>"
    x_max = max(x for x, _ in points) or 1.0
    y_max = max(y for _, y in points) or 1.0
    coords = " ".join(f"{PAD + x / x_max * (W - PAD - 10):.1f},{H - PAD - y / y_max * (H - PAD - 30):.1f}" for x, y in points)
    return f'<svg width="{W}" height="{H}" font-size="11" font-family="sans-serif">' + \
        "".join(_axis(title, x_label, y_label, x_max, y_max)) + \
        f'<polyline points="{coords}" fill="none" stroke="#d0603a" stroke-width="2"/></svg>'


def render_html(result: dict[str, Any]) -> str:
    summary, config, requests = result["summary"], result["config"], result["requests"]
    ok = [r for r in requests if r["error"] is None and r["ttft"] is not None]
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{_fmt(lookup(summary, path))}</td></tr>"
                   for label, path, _ in HEADLINE)
    counts = (f"{summary['completed']} completed, {summary['failed']} failed, {summary['incomplete']} incomplete "
              f"in {summary['duration_s']:.2f} s; {summary['total_output_tokens']} output tokens")
    settings = ", ".join(f"{k}={html.escape(str(v))}" for k, v in config.items())
    charts = [
        histogram_svg([r["ttft"] * 1000 for r in ok], "Time to first token"),
        histogram_svg([r["tpot"] * 1000 for r in ok if r["tpot"] is not None], "Time per output token"),
        histogram_svg([(b - a) * 1000 for r in ok for a, b in zip(r["chunk_times"], r["chunk_times"][1:])], "Inter-token latency"),
        histogram_svg([r["e2e"] * 1000 for r in ok], "End-to-end latency"),
        line_svg([(p["t"], p["tokens_per_s"]) for p in summary["throughput_over_time"]],
                 "Output throughput over time", "seconds into the run", "tokens/s"),
    ]
    errors = "".join(f"<li>{html.escape(e)}</li>" for e in summary["errors"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>seekstack bench — {html.escape(config.get('model', ''))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td{{border:1px solid #ccc;padding:3px 8px}}td:last-child{{text-align:right}}.charts{{display:flex;flex-wrap:wrap;gap:1em}}</style>
</head><body>
<h1>seekstack bench</h1>
<p>{html.escape(counts)}</p>
<p><small>{settings}</small></p>
<table>{rows}</table>
{f'<h2>Errors</h2><ul>{errors}</ul>' if errors else ''}
<h2>Distributions and throughput</h2>
<div class="charts">{''.join(charts)}</div>
</body></html>
"""


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
