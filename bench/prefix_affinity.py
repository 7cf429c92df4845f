"""Prefix affinity vs round-robin on two real llama.cpp replicas, with a shared-prefix workload.

Two `seekstack serve` gateways, each with two replicas of the embedded SmolLM2-135M (4 slots
each, `prompt_cache_mib: 0`: an engine keeps a prompt's KV only in the slot that ran it, as a
GPU engine keeps it only in its KV cache). One routes round-robin, the other by prefix
affinity. The workload: 8 distinct system prompts (~300 tokens each), each request one of them
(seeded, random) plus a short question, streamed, 8 tokens, 2 at a time. Rounds alternate
between the gateways (their engines idle while the other runs: on 2 cores the replicas share
the CPU anyway). TTFT is the time to the first content token.

With affinity, each system prompt lands on one replica, whose slots hold it; with round-robin
each replica sees all 8 prompts with 4 slots, and recomputes most of them.

Recorded, not judged (issue #18): the TTFT ratio, and the prompt tokens the engines reused
(`usage.prompt_tokens_details.cached_tokens`, where llama.cpp reports it).

Usage: python bench/prefix_affinity.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from governance_overhead import free_port, wait_http  # noqa: E402

TOPICS = ["mortgages", "savings accounts", "credit cards", "foreign exchange", "small business loans",
          "pensions", "insurance claims", "fraud reports"]


def system_prompt(topic: str) -> str:
    rules = " ".join(f"Rule {i}: when asked about {topic}, answer briefly, cite the policy section {i}, "
                     f"and never guess a figure." for i in range(1, 13))
    return f"You are the bank's assistant for {topic}. {rules}"


def start(tmp: Path, name: str, policy: str) -> tuple[subprocess.Popen, int, str]:
    port = free_port()
    config = {"state_dir": str(tmp / name), "server": {"log_level": "warning"}, "pii": {"default": "off"},
              "scheduler": {"policy": policy, "prefix_bytes": 256},
              "models": [{"name": "smol", "source": "embedded", "replicas": 2, "slots": 4, "context": 1024,
                          "threads": 1, "prompt_cache_mib": 0}]}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=180)
    return proc, port, (tmp / name / "admin.key").read_text().strip()


async def workload(port: int, key: str, seed: int, requests: int = 48, concurrency: int = 2) -> dict:
    rng = random.Random(seed)
    order = [rng.choice(TOPICS) for _ in range(requests)]
    ttfts, cached, prompt = [], 0, 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        async def one(topic: str, i: int):
            nonlocal cached, prompt
            body = {"model": "smol", "max_tokens": 8, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "system", "content": system_prompt(topic)},
                                 {"role": "user", "content": f"Question {i}: what is the fee?"}]}
            t0, first = time.perf_counter(), None
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200, await r.aread()
                async for line in r.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = orjson.loads(line[6:])
                    if first is None and any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                        first = time.perf_counter() - t0
                    if chunk.get("usage"):
                        prompt += chunk["usage"]["prompt_tokens"]
                        cached += chunk["usage"].get("prompt_cache_hit_tokens", 0)
            ttfts.append(first)

        queue = list(enumerate(order))

        async def worker():
            while queue:
                i, topic = queue.pop(0)
                await one(topic, i)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"ttft_p50_ms": statistics.median(ttfts) * 1000, "ttft_mean_ms": statistics.mean(ttfts) * 1000,
            "cached_ratio": cached / prompt if prompt else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    procs = []
    results: dict[str, list[dict]] = {"round-robin": [], "prefix-affinity": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            gateways = {}
            for policy in results:
                proc, port, key = start(tmp, policy, policy)
                procs.append(proc)
                gateways[policy] = (port, key)
            for policy, (port, key) in gateways.items():  # warm-up: every prompt seen once
                asyncio.run(workload(port, key, seed=99, requests=16))
            for r in range(args.rounds):
                for policy in (list(gateways) if r % 2 == 0 else list(reversed(gateways))):
                    port, key = gateways[policy]
                    results[policy].append(asyncio.run(workload(port, key, seed=r)))
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
    summary = {policy: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for policy, rs in results.items()}
    print(f"{'':18}{'TTFT p50 ms':>12}{'mean ms':>9}{'cached':>8}")
    for policy, s in summary.items():
        print(f"{policy:18}{s['ttft_p50_ms']:>12.1f}{s['ttft_mean_ms']:>9.1f}{s['cached_ratio']:>8.0%}")
    ratio = summary["prefix-affinity"]["ttft_p50_ms"] / summary["round-robin"]["ttft_p50_ms"]
    print(f"\nTTFT p50, prefix affinity / round-robin: {ratio:.2f}  (recorded; lower is better)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "prefix_affinity.json").write_text(json.dumps(
        {"rounds": results, "summary": summary, "ttft_ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
