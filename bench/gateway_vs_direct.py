"""Gateway vs the engine's native server: output tokens/s and TTFT at concurrency 1 and 8.

One `seekstack serve` with the embedded model and its default controls (API key, role check,
PII detect, audit log); the *same* engine replica is hit directly
(its TCP port or Unix socket, from /admin/v1/replicas) and through the gateway, in alternating rounds
within one run, so machine noise affects both alike. Prints ratios against the targets:

  gateway/direct throughput >= 0.97 at c=1 and c=8
  added TTFT p50 <= 2 ms
  (c8/c1 gain through the gateway) / (c8/c1 gain direct) >= 0.95

Usage: python bench/gateway_vs_direct.py [--rounds 5] [--tokens 64] [--engine-transport tcp|unix] [--controls default|off]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _load import Result, client_for, median, one_stream, run_load  # noqa: E402

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, slots: int, transport: str, controls: bool,
                 src: str | None = None, threads: int | None = None) -> tuple[subprocess.Popen, str]:
    """`seekstack serve` on a free port; ``src``: serve that checkout's code (PYTHONPATH comes first);
    ``threads``: the engine's CPU threads (default: all cores)."""
    port = free_port()
    config = tmp / "bench.yaml"
    off = {} if controls else {"auth": {"enabled": False}, "pii": {"default": "off"}}
    config.write_text(json.dumps({"state_dir": str(tmp / "state"), "server": {"log_level": "warning"}, **off,
                                  "supervisor": {"engine_transport": transport},
                                  "models": [{"name": "smollm2-135m", "source": "embedded", "context": 1024,
                                              "slots": slots, **({"threads": threads} if threads else {})}]}))
    env = {**os.environ, "PYTHONPATH": src} if src else None
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("seekstack serve did not become ready")


async def measure(gateway: str, engine: str, rounds: int, tokens: int, key: str) -> dict:
    body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
            "max_tokens": tokens, "stream": True, "ignore_eos": True, "temperature": 0.7}
    targets = {"gateway": gateway + "/v1/chat/completions", "direct": engine + "/v1/chat/completions"}
    auth = {"gateway": {"Authorization": f"Bearer {key}"}, "direct": None}
    samples: dict[str, dict[int, list]] = {k: {1: [], 8: []} for k in targets}
    await run_load(targets["direct"], body, 8, 8)  # warm-up
    for r in range(rounds):
        for c, n in ((1, 6), (8, 24)):
            order = ("gateway", "direct") if r % 2 == 0 else ("direct", "gateway")
            for name in order:
                samples[name][c].append(await run_load(targets[name], body, c, n, auth[name]))
    out = {"added_ttft_paired_ms": await paired_ttft(targets, body, pairs=200, key=key)}
    for name, by_c in samples.items():
        for c, results in by_c.items():
            assert not any(x.errors for x in results), f"{name} c={c} had errors"
            out[f"{name}_c{c}_tok_s"] = median([x.throughput for x in results])
            out[f"{name}_c{c}_ttft_p50_ms"] = median([x.p(0.5) for x in results]) * 1000
    return out


async def paired_ttft(targets: dict, body: dict, pairs: int, key: str) -> float:
    """Median over alternating direct/gateway request pairs of the TTFT difference (ms).

    Pairing cancels the machine's drift; the prompt is processed from cache after the first
    request, so the difference is the gateway's own cost on the way to the first token."""
    return median(await ttft_differences(targets, body, pairs, key)) * 1000


async def ttft_differences(targets: dict, body: dict, pairs: int, key: str) -> list[float]:
    """Gateway minus direct TTFT (s) of back-to-back request pairs, the order alternating."""
    short = {**body, "max_tokens": 2}
    diffs = []
    gw_client, gw_url = client_for(targets["gateway"], headers={"Authorization": f"Bearer {key}"})
    eng_client, eng_url = client_for(targets["direct"])
    async with gw_client, eng_client:
        for i in range(pairs):
            g, d = Result(), Result()
            if i % 2:
                await one_stream(gw_client, gw_url, short, g)
                await one_stream(eng_client, eng_url, short, d)
            else:
                await one_stream(eng_client, eng_url, short, d)
                await one_stream(gw_client, gw_url, short, g)
            diffs.append(g.ttft[0] - d.ttft[0])
    return diffs


def report(m: dict) -> dict:
    ratios = {
        "throughput_ratio_c1": m["gateway_c1_tok_s"] / m["direct_c1_tok_s"],
        "throughput_ratio_c8": m["gateway_c8_tok_s"] / m["direct_c8_tok_s"],
        "added_ttft_p50_ms_c1": m["gateway_c1_ttft_p50_ms"] - m["direct_c1_ttft_p50_ms"],
        "added_ttft_p50_ms": m["added_ttft_paired_ms"],
        "batching_gain_direct": m["direct_c8_tok_s"] / m["direct_c1_tok_s"],
        "batching_gain_gateway": m["gateway_c8_tok_s"] / m["gateway_c1_tok_s"],
    }
    ratios["batching_gain_ratio"] = ratios["batching_gain_gateway"] / ratios["batching_gain_direct"]
    checks = [
        ("gateway/direct throughput c=1", ratios["throughput_ratio_c1"], ">= 0.97", ratios["throughput_ratio_c1"] >= 0.97),
        ("gateway/direct throughput c=8", ratios["throughput_ratio_c8"], ">= 0.97", ratios["throughput_ratio_c8"] >= 0.97),
        ("added TTFT p50 (ms, paired, c=1)", ratios["added_ttft_p50_ms"], "<= 2.0", ratios["added_ttft_p50_ms"] <= 2.0),
        ("batching gain kept (gw gain / direct gain)", ratios["batching_gain_ratio"], ">= 0.95", ratios["batching_gain_ratio"] >= 0.95),
    ]
    print(f"{'':28}{'direct':>10}{'gateway':>10}")
    for c in (1, 8):
        print(f"output tok/s  c={c:<14}{m[f'direct_c{c}_tok_s']:>10.1f}{m[f'gateway_c{c}_tok_s']:>10.1f}")
        print(f"TTFT p50 ms   c={c:<14}{m[f'direct_c{c}_ttft_p50_ms']:>10.2f}{m[f'gateway_c{c}_ttft_p50_ms']:>10.2f}")
    print(f"batching gain c8/c1{'':9}{ratios['batching_gain_direct']:>10.2f}{ratios['batching_gain_gateway']:>10.2f}")
    print()
    for name, value, target, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {name:44} {value:8.3f}  (target {target})")
    return {**m, **ratios, "all_pass": all(ok for *_, ok in checks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--engine-transport", choices=["tcp", "unix"], default="tcp",
                        help="tcp: the client reaches gateway and engine alike over loopback TCP (like for like); "
                             "unix: the engine on its Unix socket (the default deployment), the gateway on TCP")
    parser.add_argument("--controls", choices=["default", "off"], default="default",
                        help="default: API key, audit, PII detect (as shipped); off: auth off (loopback) and PII off — "
                             "the proxy alone (the audit log stays on)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), slots=8, transport=args.engine_transport, controls=args.controls == "default")
        try:
            key_file = Path(tmp) / "state" / "admin.key"
            key = key_file.read_text().strip() if key_file.exists() else "none"
            engine = httpx.get(url + "/admin/v1/replicas", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["base_url"]
            m = asyncio.run(measure(url, engine, args.rounds, args.tokens, key))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print(f"engine transport: {args.engine_transport}, controls: {args.controls}")
    result = report(m)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"gateway_vs_direct-{args.engine_transport}-{args.controls}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
