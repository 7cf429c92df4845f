"""What answering through a fallback costs (traffic/fallbacks.py).

One gateway, two models on stub upstreams (bench/stub_openai.py): `up`, and `down`, whose only
endpoint's stub is stopped before measuring (ejected by the health checks) and whose
`fallbacks` is `[up]`. Non-streamed chat at concurrency 1 and 8, rounds alternating between
asking `up` itself (the floor: the same answer, from the same endpoint) and asking `down` (the
failed attempt, then the request again for `up`). The moment between the endpoint going away
and its ejection — a request then finds it down itself and retries before falling back — lasts
a heartbeat or two and is not measured here; the ejected state is what every request meets
for the rest of an outage.

With ``--litellm`` (``make bench-litellm``), LiteLLM's proxy beside it: the same two models on
the same stubs, the same fallback (``router_settings.fallbacks``), measured the same way.

Target: a request answered by the fallback takes at most 1.1x the p50 of asking the fallback
directly (c=1), and its throughput at c=8 is at least 0.9x.

Usage: python bench/fallbacks.py [--rounds 5] [--litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def start_seekstack(tmp: Path, up_port: int, down_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = {"state_dir": str(tmp / "state"), "server": {"log_level": "warning"}, "auth": {"enabled": False},
              "pii": {"default": "off"},
              "models": [
                  {"name": "up", "context": 4096, "engine": {"kind": "openai", "endpoints": [f"http://127.0.0.1:{up_port}"]}},
                  {"name": "down", "context": 4096, "fallbacks": ["up"],
                   "engine": {"kind": "openai", "endpoints": [f"http://127.0.0.1:{down_port}"]}}]}
    (tmp / "seekstack.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(tmp / "seekstack.yaml"),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return proc, port


def start_litellm(tmp: Path, up_port: int, down_port: int) -> tuple[subprocess.Popen, int] | None:
    """LiteLLM's proxy (one worker) with the same two models and the same fallback."""
    binary = HERE / ".litellm-venv" / "bin" / "litellm"
    if not binary.exists():
        print("LiteLLM not installed (make bench-litellm); skipping the side-by-side")
        return None
    port = free_port()
    config = {"model_list": [{"model_name": name, "litellm_params": {
        "model": f"openai/{name}", "api_base": f"http://127.0.0.1:{p}/v1", "api_key": "sk-stub"}}
        for name, p in (("up", up_port), ("down", down_port))],
        "router_settings": {"fallbacks": [{"down": ["up"]}]},
        "general_settings": {"master_key": LITELLM_KEY}}
    (tmp / "litellm.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([str(binary), "--config", str(tmp / "litellm.yaml"), "--port", str(port), "--num_workers", "1"],
                            stdout=open(tmp / "litellm.log", "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "LITELLM_LOG": "ERROR"})
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=240)
    return proc, port


LITELLM_KEY = "sk-bench-master"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--litellm", action="store_true", help="LiteLLM's proxy too (make bench-litellm)")
    args = parser.parse_args()
    procs: list[subprocess.Popen] = []
    proxies: dict[str, tuple[int, str | None, psutil.Process]] = {}  # name -> port, key, process
    samples: dict[tuple[str, str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            up, up_port = start_stub()
            down, down_port = start_stub()
            procs += [up, down]
            gateway, port = start_seekstack(tmp, up_port, down_port)
            procs.append(gateway)
            proxies["seekstack"] = (port, None, psutil.Process(gateway.pid))
            if args.litellm and (started := start_litellm(tmp, up_port, down_port)) is not None:
                procs.append(started[0])
                proxies["litellm"] = (started[1], LITELLM_KEY, psutil.Process(started[0].pid))
            down.send_signal(signal.SIGTERM)  # the model's only endpoint goes away
            down.wait(10)
            deadline = time.monotonic() + 10
            while httpx.get(f"http://127.0.0.1:{port}/readyz").json()["models"]["down"] == "ready":
                if time.monotonic() > deadline:
                    raise SystemExit("the stopped endpoint was not ejected in 10 s")
                time.sleep(0.1)
            for name, (proxy_port, key, _) in proxies.items():
                answer = httpx.post(f"http://127.0.0.1:{proxy_port}/v1/chat/completions", timeout=30, json={
                    "model": "down", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": f"Bearer {key}"} if key else {})
                assert answer.status_code == 200, (name, answer.text)
            requests = {(name, m): chat_request(f"127.0.0.1:{p}", key, model=m)
                        for name, (p, key, _) in proxies.items() for m in ("up", "down")}

            async def rounds():
                for (name, model), request in requests.items():  # warm-up
                    await run("127.0.0.1", proxies[name][0], request, 2,
                              400 if name == "seekstack" else 60 if model == "up" else 4)
                for r in range(args.rounds):
                    for name, (proxy_port, _, process) in proxies.items():
                        for model in (("up", "down") if r % 2 == 0 else ("down", "up")):
                            # LiteLLM: tens of requests a second, and its fallback retries the dead endpoint first
                            scale = 1 if name == "seekstack" else 10 if model == "up" else 100
                            for c in (1, 8):
                                cpu = sum(process.cpu_times()[:2])
                                result = await run("127.0.0.1", proxy_port, requests[name, model], c,
                                                   (1000 if c == 1 else 2000) // scale)
                                assert set(result["statuses"]) == {200}, (name, result["statuses"])
                                n = sum(result["statuses"].values())
                                result["cpu_ms"] = (sum(process.cpu_times()[:2]) - cpu) / n * 1000
                                samples.setdefault((name, model, c), []).append(result)

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

    def median(name: str, model: str, c: int, field: str) -> float:
        return statistics.median(s[field] for s in samples[name, model, c])

    print(f"{'':44}{'p50 c=1':>10}{'p99 c=1':>10}{'req/s c=8':>11}{'CPU/req c=8':>13}")
    for name in proxies:
        for model, label in (("up", "ask the fallback itself (floor)"), ("down", "ask the down model (fallback)")):
            print(f"{name + ': ' + label:44}{median(name, model, 1, 'p50_ms'):9.3f}ms{median(name, model, 1, 'p99_ms'):9.3f}ms"
                  f"{median(name, model, 8, 'rps'):11.0f}{median(name, model, 8, 'cpu_ms'):11.3f}ms")
    ratios = {name: (median(name, "down", 1, "p50_ms") / median(name, "up", 1, "p50_ms"),
                     median(name, "down", 8, "rps") / median(name, "up", 8, "rps")) for name in proxies}
    for name, (p50, rps) in ratios.items():
        print(f"{name}: fallback / floor: p50 {p50:.3f}x, throughput {rps:.3f}x")
    p50, rps = ratios["seekstack"]
    checks = {"p50 through the fallback <= 1.1x asking it directly (c=1)": p50 <= 1.1,
              "throughput through the fallback >= 0.9x (c=8)": rps >= 0.9}
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "fallbacks.json").write_text(json.dumps(
        {"samples": {f"{n} {m} c={c}": v for (n, m, c), v in samples.items()}, "ratios": ratios, "checks": checks},
        indent=2))


if __name__ == "__main__":
    main()
