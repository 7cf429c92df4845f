"""What metrics and tracing cost on the request path: the same gateway with them off and on.

A stub OpenAI server (bench/stub_openai.py) answers instantly. Three gateways front it as an
`engine: remote` model, identical but for observability (auth off on loopback, PII off, so
the differences are not buried under other work):
  metrics off — observability.metrics: false
  metrics on  — the default: per-request counters and histograms, /metrics served
  + tracing   — metrics on and OpenTelemetry spans for every stage, exported over OTLP/HTTP
                (to the stub, which accepts them)
Non-streamed chat requests over keep-alive connections at concurrency 1 and 8, in alternating
rounds within one run; /metrics is scraped once per round, as Prometheus would.

Target (issue #7): added p50 <= 0.3 ms with metrics on and tracing off.

Usage: python bench/observability_overhead.py [--rounds 5]
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
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _http_load import chat_request, run  # noqa: E402
from governance_overhead import free_port, wait_http  # noqa: E402

VARIANTS = {
    "metrics off": {"metrics": False},
    "metrics on": {"metrics": True},
    "metrics + tracing": {"metrics": True, "tracing": {"enabled": True}},
}


def start_gateway(tmp: Path, name: str, stub_port: int, observability: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    observability = json.loads(json.dumps(observability))
    if "tracing" in observability:
        observability["tracing"]["endpoint"] = f"http://127.0.0.1:{stub_port}/v1/traces"
    config = {"state_dir": str(tmp / name.replace(" ", "_")), "server": {"log_level": "warning"},
              "auth": {"enabled": False}, "pii": {"default": "off"}, "observability": observability,
              "models": [{"name": "stub", "engine": "remote", "url": f"http://127.0.0.1:{stub_port}", "context": 4096}]}
    path = tmp / f"{name.replace(' ', '_')}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return proc, port


async def measure(targets: dict[str, int], rounds: int, plan: list[tuple[int, int]]) -> dict:
    samples = {name: {c: [] for c, _ in plan} for name in targets}
    requests = {name: chat_request(f"127.0.0.1:{port}", None) for name, port in targets.items()}
    for name, port in targets.items():  # warm-up
        await run("127.0.0.1", port, requests[name], 4, 400)
    async with httpx.AsyncClient() as scraper:
        for r in range(rounds):
            names = list(targets) if r % 2 == 0 else list(reversed(targets))
            for c, n in plan:
                for name in names:
                    result = await run("127.0.0.1", targets[name], requests[name], c, n)
                    bad = {s: k for s, k in result["statuses"].items() if s != 200}
                    assert not bad, f"{name} c={c}: non-200 answers {bad}"
                    samples[name][c].append(result)
            for name, port in targets.items():
                await scraper.get(f"http://127.0.0.1:{port}/metrics")
    return {name: {c: {k: statistics.median(x[k] for x in results) for k in ("rps", "p50_ms", "p99_ms")}
                   for c, results in by_c.items()} for name, by_c in samples.items()}


def report(m: dict) -> dict:
    print(f"{'':20}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, by_c in m.items():
        for c, v in by_c.items():
            print(f"{name:20}{c:>4}{v['rps']:>10.0f}{v['p50_ms']:>9.3f}{v['p99_ms']:>9.3f}")
    off, on, traced = m["metrics off"], m["metrics on"], m["metrics + tracing"]
    checks = [
        ("added p50, metrics on, c=1 (ms)", on[1]["p50_ms"] - off[1]["p50_ms"], "<= 0.3", lambda v: v <= 0.3),
        ("added p50, metrics + tracing, c=1 (ms)", traced[1]["p50_ms"] - off[1]["p50_ms"], "(info)", None),
        ("req/s metrics on / off, c=8", on[8]["rps"] / off[8]["rps"], "(info)", None),
        ("req/s tracing / off, c=8", traced[8]["rps"] / off[8]["rps"], "(info)", None),
    ]
    print()
    out = {"measured": m, "checks": {}}
    for name, value, target, ok in checks:
        verdict = "    " if ok is None else ("PASS" if ok(value) else "MISS")
        print(f"{verdict}  {name:42} {value:8.3f}  (target {target})")
        out["checks"][name] = {"value": value, "target": target, "pass": None if ok is None else ok(value)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    procs = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            stub_port = free_port()
            procs.append(subprocess.Popen([sys.executable, str(HERE / "stub_openai.py"), str(stub_port)]))
            wait_http(f"http://127.0.0.1:{stub_port}/health")
            targets = {}
            for name, observability in VARIANTS.items():
                proc, port = start_gateway(tmp, name, stub_port, observability)
                procs.append(proc)
                targets[name] = port
            m = asyncio.run(measure(targets, args.rounds, [(1, 1500), (8, 3000)]))
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    result = report(m)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "observability_overhead.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
