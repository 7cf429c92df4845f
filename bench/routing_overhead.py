"""What health polling and the routing policies cost on the request path.

1. In-process: one request's routing — ``Router.ask`` (the affinity key, hashed for
   ``prefix-affinity`` from a chat with a 2 KB system prompt) plus ``acquire`` and ``release`` —
   per policy, over 4 endpoints, timed over many requests.
2. End to end: two gateways in front of the same 4 stub endpoints (bench/stub_openai.py):
   A polls each endpoint every 0.5 s and routes round-robin; B polls every 0.05 s — ten times
   the default rate — and routes by prefix affinity. Non-streamed chat at concurrency 1, rounds
   alternating; B's p50 minus A's is what the polling and the policy add.

Target (issue #18): added p50 <= 0.1 ms.

Usage: python bench/routing_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _http_load import chat_request, run  # noqa: E402
from governance_overhead import free_port, wait_http  # noqa: E402


def in_process(n: int = 20000) -> dict[str, float]:
    from seekstack.config import ModelConfig, SchedulerConfig
    from seekstack.engines.base import ExternalEngine
    from seekstack.engines.http import EngineHTTP
    from seekstack.engines.registry import engine_kind
    from seekstack.registry import Deployment, Registry
    from seekstack.supervisor import READY, Replica
    from seekstack.traffic.policies import POLICIES
    from seekstack.traffic.router import Router

    class Listed:
        def __init__(self, d):
            self.d = [d]

        def deployments(self):
            return self.d

    model = ModelConfig(name="m", engine={"kind": "vllm", "endpoints": [f"http://127.0.0.1:{9 + i}" for i in range(4)]},
                        slots=64)
    kind, http = engine_kind("vllm"), EngineHTTP(read_timeout=5)
    endpoints = [Replica(model, i, ExternalEngine(f"http://127.0.0.1:{9 + i}"),
                         kind.backend(http, f"http://127.0.0.1:{9 + i}", model), state=READY) for i in range(4)]
    registry = Registry([Listed(Deployment(alias="m", name="m", model=model, source="static", endpoints=endpoints))])
    body = {"model": "m", "messages": [{"role": "system", "content": "You are a careful assistant. " * 70},
                                       {"role": "user", "content": "What is the rate on a 30-year loan?"}]}
    out = {}

    async def measure(router: Router) -> float:
        held = [await router.acquire("m") for _ in range(6)]  # some load in flight, as in service
        t0 = time.perf_counter()
        for _ in range(n):
            ask = router.ask(body, "key", "team")
            endpoint = await router.acquire("m", ask)
            router.release(endpoint)
        elapsed = time.perf_counter() - t0
        for endpoint in held:
            router.release(endpoint)
        return elapsed / n * 1e6

    for name in POLICIES:
        router = Router(registry, SchedulerConfig(policy=name))
        out[name] = statistics.median(asyncio.run(measure(router)) for _ in range(3))
    return out


def start_gateway(tmp: Path, name: str, stubs: list[int], heartbeat: float, policy: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = {"state_dir": str(tmp / name), "server": {"log_level": "warning"}, "auth": {"enabled": False},
              "pii": {"default": "off"}, "supervisor": {"heartbeat_interval": heartbeat},
              "scheduler": {"policy": policy},
              "models": [{"name": "stub", "context": 4096,
                          "engine": {"kind": "openai", "endpoints": [f"http://127.0.0.1:{p}" for p in stubs]}}]}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    micro = in_process()
    procs: list[subprocess.Popen] = []
    samples: dict[str, list[float]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            stubs = []
            for _ in range(4):
                stub_port = free_port()
                procs.append(subprocess.Popen([sys.executable, str(HERE / "stub_openai.py"), str(stub_port)]))
                wait_http(f"http://127.0.0.1:{stub_port}/health")
                stubs.append(stub_port)
            gateways = {}
            for name, heartbeat, policy in (("A", 0.5, "round-robin"), ("B", 0.05, "prefix-affinity")):
                proc, port = start_gateway(tmp, name, stubs, heartbeat, policy)
                procs.append(proc)
                gateways[name] = (port, chat_request(f"127.0.0.1:{port}", None))
            assert httpx.get(f"http://127.0.0.1:{gateways['B'][0]}/healthz").status_code == 200

            async def rounds():
                for port, req in gateways.values():
                    await run("127.0.0.1", port, req, 2, 500)  # warm-up
                for r in range(args.rounds):
                    for name in (("A", "B") if r % 2 == 0 else ("B", "A")):
                        port, req = gateways[name]
                        result = await run("127.0.0.1", port, req, 1, 1500)
                        assert set(result["statuses"]) == {200}, result["statuses"]
                        samples[name].append(result["p50_ms"])

            asyncio.run(rounds())
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    print("routing per request, in process (ask + acquire + release, 4 endpoints):")
    for name, us in micro.items():
        print(f"  {name:20}{us:8.1f} us")
    a, b = statistics.median(samples["A"]), statistics.median(samples["B"])
    added = b - a
    pairs = [y - x for x, y in zip(samples["A"], samples["B"])]
    print(f"\nend to end, c=1, p50 ms per round: A (0.5 s polls, round-robin) {[round(x, 3) for x in samples['A']]}")
    print(f"                                   B (0.05 s polls, prefix-affinity) {[round(x, 3) for x in samples['B']]}")
    print(f"added p50: {added * 1000:.0f} us (median of rounds), paired per round {[round(p * 1000) for p in pairs]} us")
    worst_micro = max(micro.values())
    checks = {"routing in process <= 100 us per request": worst_micro <= 100,
              "polling 10x + prefix affinity add p50 <= 0.1 ms end to end": added <= 0.1}
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "routing_overhead.json").write_text(json.dumps(
        {"in_process_us": micro, "p50_ms": samples, "added_p50_ms": added, "checks": checks}, indent=2))


if __name__ == "__main__":
    main()
