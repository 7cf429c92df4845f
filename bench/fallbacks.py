"""What answering through a fallback costs (traffic/fallbacks.py).

One gateway, two models on stub upstreams (bench/stub_openai.py): `up`, and `down`, whose only
endpoint's stub is stopped before measuring (ejected by the health checks) and whose
`fallbacks` is `[up]`. Non-streamed chat at concurrency 1 and 8, rounds alternating between
asking `up` itself (the floor: the same answer, from the same endpoint) and asking `down` (the
failed attempt, then the request again for `up`). The moment between the endpoint going away
and its ejection — a request then finds it down itself and retries before falling back — lasts
a heartbeat or two and is not measured here; the ejected state is what every request meets
for the rest of an outage.

Target: a request answered by the fallback takes at most 1.1x the p50 of asking the fallback
directly (c=1), and its throughput at c=8 is at least 0.9x.

Usage: python bench/fallbacks.py [--rounds 5]
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
import psutil
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _http_load import chat_request, run  # noqa: E402
from governance_overhead import free_port, wait_http  # noqa: E402


def start_stub() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "stub_openai.py"), str(port)])
    wait_http(f"http://127.0.0.1:{port}/health")
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    procs: list[subprocess.Popen] = []
    samples: dict[tuple[str, int], list[dict]] = {(m, c): [] for m in ("up", "down") for c in (1, 8)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            up, up_port = start_stub()
            down, down_port = start_stub()
            procs += [up, down]
            port = free_port()
            config = {"state_dir": str(tmp / "state"), "server": {"log_level": "warning"}, "auth": {"enabled": False},
                      "pii": {"default": "off"},
                      "models": [
                          {"name": "up", "context": 4096, "engine": {"kind": "openai", "endpoints": [f"http://127.0.0.1:{up_port}"]}},
                          {"name": "down", "context": 4096, "fallbacks": ["up"],
                           "engine": {"kind": "openai", "endpoints": [f"http://127.0.0.1:{down_port}"]}}]}
            (tmp / "seekstack.yaml").write_text(yaml.safe_dump(config))
            gateway = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(tmp / "seekstack.yaml"),
                                        "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(gateway)
            wait_http(f"http://127.0.0.1:{port}/readyz")
            down.send_signal(signal.SIGTERM)  # the model's only endpoint goes away
            down.wait(10)
            deadline = time.monotonic() + 10
            while httpx.get(f"http://127.0.0.1:{port}/readyz").json()["models"]["down"] == "ready":
                if time.monotonic() > deadline:
                    raise SystemExit("the stopped endpoint was not ejected in 10 s")
                time.sleep(0.1)
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={
                "model": "down", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
            assert answer.status_code == 200 and answer.headers["x-seekstack-fallback-from"] == "down", answer.text
            gateway_process = psutil.Process(gateway.pid)
            requests = {m: chat_request(f"127.0.0.1:{port}", None, model=m) for m in ("up", "down")}

            async def rounds():
                for request in requests.values():
                    await run("127.0.0.1", port, request, 2, 400)  # warm-up
                for r in range(args.rounds):
                    for model in (("up", "down") if r % 2 == 0 else ("down", "up")):
                        for c in (1, 8):
                            cpu = sum(gateway_process.cpu_times()[:2])
                            result = await run("127.0.0.1", port, requests[model], c, 1000 if c == 1 else 2000)
                            assert set(result["statuses"]) == {200}, result["statuses"]
                            n = sum(result["statuses"].values())
                            result["cpu_ms"] = (sum(gateway_process.cpu_times()[:2]) - cpu) / n * 1000
                            samples[model, c].append(result)

            asyncio.run(rounds())
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()

    def median(model: str, c: int, field: str) -> float:
        return statistics.median(s[field] for s in samples[model, c])

    p50_up, p50_down = median("up", 1, "p50_ms"), median("down", 1, "p50_ms")
    rps_up, rps_down = median("up", 8, "rps"), median("down", 8, "rps")
    print(f"{'':32}{'p50 c=1':>10}{'p99 c=1':>10}{'req/s c=8':>11}{'CPU/req c=8':>13}")
    for model, label in (("up", "ask the fallback itself (floor)"), ("down", "ask the down model (fallback)")):
        print(f"{label:32}{median(model, 1, 'p50_ms'):9.3f}ms{median(model, 1, 'p99_ms'):9.3f}ms"
              f"{median(model, 8, 'rps'):11.0f}{median(model, 8, 'cpu_ms'):11.3f}ms")
    print(f"fallback / floor: p50 {p50_down / p50_up:.3f}x (+{(p50_down - p50_up) * 1000:.0f} us), "
          f"throughput {rps_down / rps_up:.3f}x")
    checks = {"p50 through the fallback <= 1.1x asking it directly (c=1)": p50_down <= 1.1 * p50_up,
              "throughput through the fallback >= 0.9x (c=8)": rps_down >= 0.9 * rps_up}
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "fallbacks.json").write_text(json.dumps(
        {"samples": {f"{m} c={c}": v for (m, c), v in samples.items()}, "checks": checks}, indent=2))


if __name__ == "__main__":
    main()
