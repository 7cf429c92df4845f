"""Summaries of a benchmark run, with vLLM ``bench serve``'s definitions.

- TTFT: start of the request to its first token.
- TPOT: (E2E − TTFT) ÷ (output tokens − 1), per request with at least two output tokens.
- ITL: the gap between consecutive token chunks, over all requests.
- E2E: start of the request to its last byte.
- Request and output-token throughput: completed requests and their output tokens ÷ the run's
  duration (first request's start to last request's end).
- Goodput: requests that met every SLO given (``ttft``, ``tpot``, ``e2el``; in ms) ÷ duration.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import InvalidRequestError
from .loadgen import RequestResult

SLO_KEYS = ("ttft", "tpot", "e2el")
PERCENTILES = (50, 90, 99)


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values_s: list[float]) -> dict[str, float | None]:
    """Mean and percentiles, in milliseconds (None when there are no values)."""
    if not values_s:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    ms = [v * 1000 for v in values_s]
    return {"mean": sum(ms) / len(ms), **{f"p{p}": percentile(ms, p) for p in PERCENTILES}}


def parse_slo(text: str | None) -> dict[str, float]:
    """``ttft=500ms,tpot=50ms,e2el=2s`` → {"ttft": 500.0, "tpot": 50.0, "e2el": 2000.0} (milliseconds)."""
    slos: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in SLO_KEYS:
            raise InvalidRequestError(f"SLO {part!r} is not NAME=VALUE with NAME one of {', '.join(SLO_KEYS)}",
                                      fix="write e.g. --slo ttft=500ms,tpot=50ms")
        value = value.strip().lower()
        scale = 1000.0 if value.endswith("s") and not value.endswith("ms") else 1.0
        number = value.removesuffix("ms").removesuffix("s")
        try:
            slos[name] = float(number) * scale
        except ValueError:
            raise InvalidRequestError(f"SLO {part!r}: {value!r} is not a duration", fix="use 500ms or 2s") from None
        if slos[name] <= 0:
            raise InvalidRequestError(f"SLO {part!r} must be positive", fix="use e.g. ttft=500ms")
    return slos


def meets(result: RequestResult, slos: dict[str, float]) -> bool:
    measured = {"ttft": result.ttft, "tpot": result.tpot, "e2el": result.e2e}
    for name, limit_ms in slos.items():
        value = measured[name]
        if value is not None and value * 1000 > limit_ms:
            return False
    return True


def throughput_series(results: list[RequestResult], bucket: float = 1.0) -> list[dict[str, float]]:
    """Output tokens per second over the run, in ``bucket``-second steps (each request's tokens
    are spread over its token chunks)."""
    points: dict[int, float] = {}
    for r in results:
        if not r.ok or not r.chunk_times:
            continue
        weight = r.output_tokens / len(r.chunk_times)
        for t in r.chunk_times:
            points[int(t // bucket)] = points.get(int(t // bucket), 0.0) + weight
    if not points:
        return []
    return [{"t": i * bucket, "tokens_per_s": points.get(i, 0.0) / bucket} for i in range(min(points), max(points) + 1)]


def summarize(results: list[RequestResult], duration: float, slos: dict[str, float]) -> dict[str, Any]:
    done = [r for r in results if r.ok]
    failed = [r for r in results if r.end and not r.ok]
    output = sum(r.output_tokens for r in done)
    good = sum(meets(r, slos) for r in done)
    per_s = (lambda n: n / duration) if duration > 0 else (lambda n: 0.0)
    return {
        "completed": len(done),
        "failed": len(failed),
        "incomplete": len(results) - len(done) - len(failed),
        "duration_s": duration,
        "total_prompt_tokens": sum(r.prompt_tokens for r in done),
        "total_output_tokens": output,
        "request_throughput": per_s(len(done)),
        "output_throughput": per_s(output),
        "goodput": per_s(good) if slos else None,
        "good_requests": good if slos else None,
        "slo_ms": slos,
        "ttft_ms": distribution([r.ttft for r in done]),
        "tpot_ms": distribution([r.tpot for r in done if r.tpot is not None]),
        "itl_ms": distribution([gap for r in done for gap in r.itl]),
        "e2el_ms": distribution([r.e2e for r in done]),
        "errors": sorted({r.error for r in failed if r.error})[:10],
        "throughput_over_time": throughput_series(done),
    }


# (label, path in the summary, higher is better) — what `bench compare` and the Rich table show.
HEADLINE: list[tuple[str, tuple[str, ...], bool]] = [
    ("request throughput (req/s)", ("request_throughput",), True),
    ("output throughput (tok/s)", ("output_throughput",), True),
    ("goodput (req/s)", ("goodput",), True),
    *[(f"{name.upper()} {stat} (ms)", (f"{name}_ms", stat), False)
      for name in ("ttft", "tpot", "itl", "e2el") for stat in ("mean", "p50", "p90", "p99")],
]


def lookup(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None
