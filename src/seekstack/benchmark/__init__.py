"""`seekstack bench`: load-test any OpenAI-compatible endpoint and report TTFT, TPOT, ITL, E2E,
throughput and goodput (vLLM ``bench serve``'s definitions), as a Rich table, JSON and HTML."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from .loadgen import LoadGenerator, LoadSpec, RequestResult
from .stats import HEADLINE, lookup, summarize

FORMAT = 1  # version of the results JSON


def run_benchmark(spec: LoadSpec, slos: dict[str, float], *, label: str = "",
                  on_done: Callable[[RequestResult], None] | None = None) -> dict[str, Any]:
    results, duration = asyncio.run(LoadGenerator(spec, on_done).run())
    config = {"label": label, "base_url": spec.base_url, "model": spec.model, "requests": len(spec.prompts),
              "concurrency": spec.concurrency, "rate": spec.rate, "max_tokens": spec.max_tokens,
              "ignore_eos": spec.ignore_eos, "duration_limit_s": spec.duration, "seed": spec.seed,
              "warmup": spec.warmup}
    return {"format": FORMAT, "config": config, "summary": summarize(results, duration, slos),
            "requests": [r.to_json() for r in results]}


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, float | None, float | None, float | None, bool]]:
    """(metric, A, B, B ÷ A, higher is better) for each headline metric."""
    rows = []
    for label, path, higher in HEADLINE:
        x, y = lookup(a["summary"], path), lookup(b["summary"], path)
        rows.append((label, x, y, (y / x) if x and y is not None else None, higher))
    return rows
