"""How fast a request past a model's queue bound is refused: 429 with Retry-After, not a wait.

One `seekstack serve` in front of one `seekstack sim` engine (vLLM dialect) whose model has
`queue: {concurrency: 2, max_waiting: 2}`. Four long streams are held open (two running, two
waiting in the gateway's queue); then 300 more chats are sent one at a time, and 300 more 8 at a
time, each timed from send to the whole 429 response. For scale, the same gateway's answer to
a model that serves at once (a second sim with no queue bound) is timed the same way.

Target (issue #18): past the bound, 429 with Retry-After within 50 ms (p99).

Usage: python bench/overload.py
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from governance_overhead import free_port, wait_http  # noqa: E402

SEEKSTACK = [sys.executable, "-m", "seekstack"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def timed(http: httpx.AsyncClient, model: str, n: int, concurrency: int) -> tuple[list[float], dict[int, int]]:
    latencies, statuses, left = [], {}, [n]

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            t0 = time.perf_counter()
            r = await http.post("/v1/chat/completions", json={"model": model, "max_tokens": 4,
                                                              "messages": [{"role": "user", "content": "hi"}]})
            latencies.append(time.perf_counter() - t0)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


async def measure(port: int, key: str) -> dict:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                 headers={"Authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_keepalive_connections=16)) as http:
        await timed(http, "free", 50, 1)  # warm-up
        held = [asyncio.ensure_future(http.post("/v1/chat/completions", json={
            "model": "busy", "stream": True, "messages": [{"role": "user", "content": "go on"}]})) for _ in range(4)]
        await asyncio.sleep(0.5)
        out = {}
        for c in (1, 8):
            refused, statuses = await timed(http, "busy", 300, c)
            served, _ = await timed(http, "free", 300, c)
            out[c] = {"refused_p50_ms": percentile(refused, .5) * 1000, "refused_p99_ms": percentile(refused, .99) * 1000,
                      "served_p50_ms": percentile(served, .5) * 1000, "served_p99_ms": percentile(served, .99) * 1000,
                      "statuses": statuses}
        for task in held:
            task.cancel()
        return out


def main() -> None:
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            ports = {}
            for name, extra in (("busy", ["--itl-ms", "50", "--output-len", "400"]), ("free", [])):
                ports[name] = free_port()
                procs.append(subprocess.Popen([*SEEKSTACK, "sim", "--dialect", "vllm", "--model", name, "--port",
                                               str(ports[name]), "--max-num-seqs", "64", *extra],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_http(f"http://127.0.0.1:{ports[name]}/sim/info")
            port = free_port()
            config = tmp / "gw.yaml"
            config.write_text(yaml.safe_dump({
                "state_dir": str(tmp / "state"), "server": {"log_level": "warning"},
                "models": [{"name": "busy", "context": 4096, "slots": 64, "queue": {"concurrency": 2, "max_waiting": 2},
                            "engine": {"kind": "vllm", "url": f"http://127.0.0.1:{ports['busy']}"}},
                           {"name": "free", "context": 4096, "slots": 64,
                            "engine": {"kind": "vllm", "url": f"http://127.0.0.1:{ports['free']}"}}]}))
            procs.append(subprocess.Popen([*SEEKSTACK, "serve", "--config", str(config), "--port", str(port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
            key = (tmp / "state" / "admin.key").read_text().strip()
            result = asyncio.run(measure(port, key))
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    print(f"{'c':>3}{'429 p50 ms':>12}{'429 p99 ms':>12}{'served p50':>12}{'served p99':>12}  statuses")
    for c, r in result.items():
        print(f"{c:>3}{r['refused_p50_ms']:>12.2f}{r['refused_p99_ms']:>12.2f}{r['served_p50_ms']:>12.2f}"
              f"{r['served_p99_ms']:>12.2f}  {r['statuses']}")
    ok = all(r["refused_p99_ms"] <= 50 and set(r["statuses"]) == {429} for r in result.values())
    print(f"{'PASS' if ok else 'MISS'}  past the bound, every request refused with 429 + Retry-After, p99 <= 50 ms")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "overload.json").write_text(json.dumps({"measured": result, "pass": ok}, indent=2))


if __name__ == "__main__":
    main()
