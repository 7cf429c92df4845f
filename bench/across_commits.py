"""Added TTFT (and the c=8 throughput ratio) of two checkouts in one run — is a change an improvement?

On this machine a slow quarter of an hour moves the added TTFT by more than most changes do
(1.9–5.6 ms for the same code in successive batches), so two commits are only compared side
by side: both servers run at once (each with its own engine; an idle one costs nothing) and
batches of paired requests alternate between them, measured as in gateway_vs_direct.py.

    git worktree add /tmp/base <commit>
    .venv/bin/python bench/across_commits.py /tmp/base/src src [--batches 6 --pairs 60 --c8 --engine-transport unix]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _load import run_load  # noqa: E402
from gateway_vs_direct import start_server, ttft_differences  # noqa: E402

BODY = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
        "max_tokens": 64, "stream": True, "ignore_eos": True, "temperature": 0.7}


def start(tmp: Path, src: str, transport: str):
    """One checkout's server: its process, the gateway and direct URLs, and the admin key."""
    proc, url = start_server(tmp, slots=8, transport=transport, controls=True, src=src)
    key = (tmp / "state" / "admin.key").read_text().strip()
    engine = httpx.get(url + "/admin/v1/replicas", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["base_url"]
    return proc, {"gateway": url + "/v1/chat/completions", "direct": engine + "/v1/chat/completions"}, key


async def c8_ratio(targets: dict, key: str, gateway_first: bool) -> float:
    throughput = {}
    for name in ("gateway", "direct") if gateway_first else ("direct", "gateway"):
        headers = {"Authorization": f"Bearer {key}"} if name == "gateway" else None
        throughput[name] = (await run_load(targets[name], BODY, 8, 24, headers)).throughput
    return throughput["gateway"] / throughput["direct"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the baseline checkout's src directory")
    parser.add_argument("candidate", help="the candidate checkout's src directory")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=60, help="paired requests per batch")
    parser.add_argument("--c8", action="store_true", help="also measure the c=8 gateway/direct throughput per batch")
    parser.add_argument("--engine-transport", choices=["tcp", "unix"], default="tcp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as t1, tempfile.TemporaryDirectory() as t2:
        servers = {"base": start(Path(t1), args.base, args.engine_transport),
                   "candidate": start(Path(t2), args.candidate, args.engine_transport)}
        ttft: dict[str, list[float]] = {k: [] for k in servers}
        c8: dict[str, list[float]] = {k: [] for k in servers}

        async def run() -> None:
            for _, targets, key in servers.values():
                await ttft_differences(targets, BODY, 20, key)  # warm-up
            for b in range(args.batches):
                for name in ("base", "candidate") if b % 2 == 0 else ("candidate", "base"):
                    _, targets, key = servers[name]
                    diffs = await ttft_differences(targets, BODY, args.pairs, key)
                    ttft[name] += diffs
                    line = f"batch {b} {name:9}: added TTFT p50 {statistics.median(diffs) * 1000:.3f} ms"
                    if args.c8:
                        c8[name].append(await c8_ratio(targets, key, gateway_first=b % 2 == 0))
                        line += f", c=8 gateway/direct {c8[name][-1]:.3f}"
                    print(line, flush=True)

        try:
            asyncio.run(run())
        finally:
            for proc, _, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    print()
    for name in servers:
        line = f"{name:9}: added TTFT p50 {statistics.median(ttft[name]) * 1000:.3f} ms ({len(ttft[name])} pairs)"
        if c8[name]:
            line += f"; c=8 gateway/direct median {statistics.median(c8[name]):.3f}"
        print(line)


if __name__ == "__main__":
    main()
