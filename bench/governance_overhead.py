"""What the governance controls cost: all on vs all off vs straight to the same fast upstream.

A stub OpenAI server (bench/stub_openai.py) answers instantly. Two gateways front it as an
`engine: remote` model:
  off — auth disabled (loopback), PII off, no quotas;  (the audit log cannot be turned off)
  on  — API key, role check, quotas on key/user/team (rpm, tpm, concurrency, daily budget),
        PII `mask` on prompt and answer, fail-closed audit (two records per request).
Non-streamed chat requests over keep-alive connections at concurrency 1 and 32, in
alternating rounds within one run. With --litellm, LiteLLM's proxy (one worker, master key)
fronts the same stub in the same run (needs bench/.litellm-venv: `make bench-litellm`).

Targets (issue #4): added p50 <= 1.5 ms; added p99 <= 5 ms at c=32; rps on >= 0.70 x off;
rps on >= 5 x LiteLLM at c=32.

Usage: python bench/governance_overhead.py [--rounds 3] [--litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, headers=None, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def start_gateway(tmp: Path, name: str, stub_port: int, controls: bool,
                  extra: dict | None = None) -> tuple[subprocess.Popen, int, str | None]:
    """``extra``: more settings (e.g. ``storage``)."""
    port = free_port()
    config = {"state_dir": str(tmp / name), "server": {"log_level": "warning"}, **(extra or {}),
              "models": [{"name": "stub", "engine": "remote", "url": f"http://127.0.0.1:{stub_port}", "context": 4096}]}
    if controls:
        config["pii"] = {"default": "mask"}
    else:
        config["auth"] = {"enabled": False}
        config["pii"] = {"default": "off"}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    key = None
    if controls:
        key = (tmp / name / "admin.key").read_text().strip()
        h = {"Authorization": f"Bearer {key}"}
        kid = httpx.get(f"http://127.0.0.1:{port}/admin/v1/whoami", headers=h).json()["key_id"]
        h = {"Authorization": f"Bearer {(tmp / name / 'security-admin.key').read_text().strip()}"}  # limits: its duty
        big = {"rpm": 10**9, "tpm": 10**12, "concurrent": 10**6, "daily_tokens": 10**13}
        for scope, who in (("key", kid), ("user", "admin"), ("team", "default")):
            r = httpx.put(f"http://127.0.0.1:{port}/admin/v1/limits", headers=h, json={"scope": scope, "name": who, **big})
            assert r.status_code == 200, r.text
    return proc, port, key


def start_litellm(tmp: Path, stub_port: int, model: str = "stub") -> tuple[subprocess.Popen, int] | None:
    """LiteLLM's proxy (one worker, master key sk-bench-master) serving ``model`` from the server on ``stub_port``."""
    binary = HERE / ".litellm-venv" / "bin" / "litellm"
    if not binary.exists():
        print("LiteLLM not installed (make bench-litellm); skipping the side-by-side")
        return None
    port = free_port()
    config = {"model_list": [{"model_name": model, "litellm_params": {
        "model": f"openai/{model}", "api_base": f"http://127.0.0.1:{stub_port}/v1", "api_key": "sk-stub"}}],
        "general_settings": {"master_key": "sk-bench-master"}}
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([str(binary), "--config", str(path), "--port", str(port), "--num_workers", "1"],
                            stdout=open(tmp / "litellm.log", "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "LITELLM_LOG": "ERROR"})
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=240)
    return proc, port


async def measure(targets: dict[str, tuple[int, bytes]], rounds: int, plan: list[tuple[int, int]]) -> dict:
    samples: dict[str, dict[int, list[dict]]] = {name: {c: [] for c, _ in plan} for name in targets}
    for name, (port, req) in targets.items():  # warm-up
        await run("127.0.0.1", port, req, 4, 400)
    for r in range(rounds):
        names = list(targets) if r % 2 == 0 else list(reversed(targets))
        for c, n in plan:
            for name in names:
                port, req = targets[name]
                result = await run("127.0.0.1", port, req, c, n)
                bad = {s: k for s, k in result["statuses"].items() if s != 200}
                assert not bad, f"{name} c={c}: non-200 answers {bad}"
                samples[name][c].append(result)
    return {name: {c: {k: statistics.median(x[k] for x in results) for k in ("rps", "p50_ms", "p99_ms")}
                   for c, results in by_c.items()} for name, by_c in samples.items()}


def report(m: dict) -> dict:
    print(f"{'':22}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, by_c in m.items():
        for c, v in by_c.items():
            print(f"{name:22}{c:>4}{v['rps']:>10.0f}{v['p50_ms']:>9.2f}{v['p99_ms']:>9.2f}")
    d, off, on = m["direct"], m["gateway (off)"], m["gateway (on)"]
    checks = [
        ("added p50, all on, c=1 (ms)", on[1]["p50_ms"] - d[1]["p50_ms"], "<= 1.5", lambda v: v <= 1.5),
        ("added p50, all off, c=1 (ms)", off[1]["p50_ms"] - d[1]["p50_ms"], "(info)", None),
        ("added p99, all on, c=32 (ms)", on[32]["p99_ms"] - d[32]["p99_ms"], "<= 5", lambda v: v <= 5.0),
        ("req/s all on / all off, c=32", on[32]["rps"] / off[32]["rps"], ">= 0.70", lambda v: v >= 0.70),
    ]
    if "litellm" in m:
        checks.append(("req/s seekstack (on) / LiteLLM, c=32", on[32]["rps"] / m["litellm"][32]["rps"], ">= 5",
                       lambda v: v >= 5.0))
        checks.append(("LiteLLM added p50, c=1 (ms)", m["litellm"][1]["p50_ms"] - d[1]["p50_ms"], "(info)", None))
    print()
    out = {"measured": m, "checks": {}}
    for name, value, target, ok in checks:
        verdict = "    " if ok is None else ("PASS" if ok(value) else "MISS")
        print(f"{verdict}  {name:42} {value:8.2f}  (target {target})")
        out["checks"][name] = {"value": value, "target": target, "pass": None if ok is None else ok(value)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--litellm", action="store_true", help="also measure LiteLLM's proxy in front of the stub")
    args = parser.parse_args()
    procs = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            stub_port = free_port()
            procs.append(subprocess.Popen([sys.executable, str(HERE / "stub_openai.py"), str(stub_port)]))
            wait_http(f"http://127.0.0.1:{stub_port}/health")
            off, off_port, _ = start_gateway(tmp, "off", stub_port, controls=False)
            procs.append(off)
            on, on_port, key = start_gateway(tmp, "on", stub_port, controls=True)
            procs.append(on)
            targets = {
                "direct": (stub_port, chat_request(f"127.0.0.1:{stub_port}", None)),
                "gateway (off)": (off_port, chat_request(f"127.0.0.1:{off_port}", None)),
                "gateway (on)": (on_port, chat_request(f"127.0.0.1:{on_port}", key)),
            }
            if args.litellm and (lite := start_litellm(tmp, stub_port)):
                procs.append(lite[0])
                targets["litellm"] = (lite[1], chat_request(f"127.0.0.1:{lite[1]}", "sk-bench-master"))
            plan = [(1, 1500), (32, 6000)]
            if "litellm" in targets:
                plan = [(1, 600), (32, 2400)]
            m = asyncio.run(measure(targets, args.rounds, plan))
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
    (HERE / "results" / "governance_overhead.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
