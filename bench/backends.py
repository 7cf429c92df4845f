"""Gateway vs straight to the engine, for each engine dialect on the simulator — and 200 live streams.

One `seekstack sim` per dialect (vllm, sglang, openai; the same process is hit directly and through
the gateway), one `seekstack serve` in front of all three (`engine: {kind: …, url: …}`, default
controls: key, role, PII detect, audit), and the controls floor of bench/floors.py (a bare uvicorn
app with seekstack's key check and audit commit) in front of each simulator. In one run:

  tokens/s through the gateway ÷ direct, at concurrency 1 and 8     target >= 0.97
  added TTFT: gateway − direct, paired, minus the floor's − direct  target <= 0.5 ms
  200 concurrent streams through the gateway: gateway CPU per streamed token (and, with
  --profile, where it goes: a cProfile of the gateway process, top functions by own time)

llama.cpp's row is bench/gateway_vs_direct.py and bench/floors.py (a real engine on this CPU).

With --litellm, LiteLLM's proxy (one worker, master key; `make bench-litellm`) fronts the vLLM-dialect
simulator too, and its added TTFT is paired the same way: target, seekstack's <= 1/4 of LiteLLM's.

Usage: python bench/backends.py [--rounds 3] [--pairs 150] [--streams 200] [--profile] [--litellm]
       python bench/backends.py --external vllm=http://127.0.0.1:8000 --served-name NAME --api-key-file F
         (a real engine, as bench/gpu_check.sh runs it: gateway vs direct only, no floor)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _load import Result, client_for, median, one_stream, run_load  # noqa: E402
from floors import cpu_seconds, start_floor  # noqa: E402
from governance_overhead import start_litellm  # noqa: E402
from gateway_vs_direct import free_port  # noqa: E402

HERE = Path(__file__).parent
DIALECTS = ["vllm", "sglang", "openai"]
TOKENS = 64
NAMES = {d: f"bench-{d}" for d in DIALECTS}   # the model id, at the gateway and at the engine


def wait_up(url: str) -> None:
    for _ in range(600):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def start_sim(dialect: str, itl_ms: float) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "sim", "--dialect", dialect, "--port", str(port),
                             "--model", f"bench-{dialect}", "--reasoning", "off", "--output-len", str(TOKENS),
                             "--itl-ms", str(itl_ms), "--ttft-ms", "2", "--load-factor", "0", "--max-num-seqs", "512",
                             "--max-model-len", "4096"], stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/sim/info")
    return proc, port


def start_gateway(tmp: Path, urls: dict[str, str], profile: bool, key_file: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = tmp / "gw.yaml"
    auth = {"api_key_file": str(key_file)} if key_file else {}
    config.write_text(json.dumps({
        "state_dir": str(tmp / "state"), "server": {"log_level": "warning"},
        "models": [{"name": NAMES[d], "context": 4096, "slots": 256, "engine": {"kind": d, "url": url, **auth}}
                   for d, url in urls.items()]}))
    serve = ["serve", "--config", str(config), "--port", str(port)]
    argv = [sys.executable, str(HERE / "_profiled.py"), str(tmp / "gateway.prof"), *serve] if profile else \
        [sys.executable, "-m", "seekstack", *serve]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("seekstack serve did not become ready")


def body(dialect: str, max_tokens: int = TOKENS) -> dict:
    return {"model": NAMES[dialect], "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
            "stream": True, "max_tokens": max_tokens, "ignore_eos": True}


async def throughput(targets: dict, headers: dict, dialect: str, rounds: int) -> dict:
    samples = {name: {1: [], 8: []} for name in targets if name != "litellm"}
    await run_load(targets["direct"], body(dialect), 8, 8, headers.get("direct"))  # warm-up
    for r in range(rounds):
        for c, n in ((1, 6), (8, 24)):
            names = list(samples)
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples[name][c].append(await run_load(targets[name], body(dialect), c, n, headers.get(name)))
    out = {}
    for name, by_c in samples.items():
        for c, results in by_c.items():
            assert not any(x.errors for x in results), f"{dialect} {name} c={c} had errors"
            out[f"{name}_c{c}_tok_s"] = median([x.throughput for x in results])
    return out


async def added_ttft(targets: dict, headers: dict, dialect: str, pairs: int) -> dict:
    """Median TTFT difference to the request to the engine direct just before or after it (ms)."""
    short = body(dialect, max_tokens=2)
    clients = {name: client_for(url, headers=headers.get(name)) for name, url in targets.items()}
    diffs: dict[str, list[float]] = {name: [] for name in targets if name != "direct"}
    try:
        for i in range(pairs):
            order = list(targets)
            order = order[i % len(order):] + order[:i % len(order)]
            got = {}
            for name in order:
                client, url = clients[name]
                result = Result()
                await one_stream(client, url, short, result)
                got[name] = result.ttft[0]
            for name in diffs:
                diffs[name].append(got[name] - got["direct"])
    finally:
        for client, _ in clients.values():
            await client.aclose()
    return {f"{name}_added_ttft_ms": median(values) * 1000 for name, values in diffs.items()}


async def many_streams(url: str, headers: dict, dialect: str, streams: int, pid: int) -> dict:
    idle_from = cpu_seconds(pid)
    await asyncio.sleep(2)
    idle = (cpu_seconds(pid) - idle_from) / 2  # heartbeats and timers, per second
    started, cpu_from = time.perf_counter(), cpu_seconds(pid)
    result = await run_load(url, body(dialect), streams, streams, headers)
    wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_from - idle * (time.perf_counter() - started)
    assert not result.errors, f"{result.errors} of {streams} streams failed"
    return {"streams": streams, "tokens": result.tokens, "wall_s": wall, "gateway_cpu_s": cpu,
            "cpu_us_per_token": cpu / result.tokens * 1e6, "tok_s": result.tokens / wall}


async def main_async(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    procs: list[subprocess.Popen] = []
    try:
        if args.external:
            dialect, _, engine_url = args.external.partition("=")
            DIALECTS[:] = [dialect]
            NAMES[dialect] = args.served_name
            urls, engine_key = {dialect: engine_url}, args.api_key_file.read_text().strip()
        else:
            sims = {d: start_sim(d, args.itl_ms) for d in DIALECTS}
            procs += [p for p, _ in sims.values()]
            urls, engine_key = {d: f"http://127.0.0.1:{port}" for d, (_, port) in sims.items()}, None
        gateway, url = start_gateway(tmp, urls, args.profile, args.api_key_file if args.external else None)
        procs.append(gateway)
        key = (tmp / "state" / "admin.key").read_text().strip()
        out: dict = {"itl_ms": None if args.external else args.itl_ms, "tokens": TOKENS}
        for dialect, engine_url in urls.items():
            port = int(engine_url.rsplit(":", 1)[1])
            targets = {"direct": engine_url + "/v1/chat/completions", "gateway": url + "/v1/chat/completions"}
            headers = {"gateway": {"Authorization": f"Bearer {key}"},
                       "direct": {"Authorization": f"Bearer {engine_key}"} if engine_key else None}
            if not args.external:  # the floor relays the client's key verbatim: only in front of a keyless engine
                floor, floor_url = start_floor("controls", port, tmp / f"floor-{dialect}")
                procs.append(floor)
                targets["floor"] = floor_url
                headers["floor"] = {"Authorization": f"Bearer {(tmp / f'floor-{dialect}' / 'admin.key').read_text().strip()}"}
            if args.litellm and dialect == "vllm" and (lite := start_litellm(tmp, port, NAMES[dialect])):
                procs.append(lite[0])
                targets["litellm"] = f"http://127.0.0.1:{lite[1]}/v1/chat/completions"
                headers["litellm"] = {"Authorization": "Bearer sk-bench-master"}
            row = await throughput(targets, headers, dialect, args.rounds)
            row.update(await added_ttft(targets, headers, dialect, args.pairs))
            if "floor_added_ttft_ms" in row:
                row["gateway_over_floor_ms"] = row["gateway_added_ttft_ms"] - row["floor_added_ttft_ms"]
            out[dialect] = row
        first = DIALECTS[0]
        out["streams"] = await many_streams(url + "/v1/chat/completions", {"Authorization": f"Bearer {key}"}, first,
                                            args.streams, gateway.pid)
        if args.profile:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)
            stats = pstats.Stats(str(tmp / "gateway.prof"))
            out["profile_top"] = top_functions(stats, 15)
        return out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def top_functions(stats: pstats.Stats, n: int) -> list[dict]:
    rows = []
    total = sum(tt for (_, _, tt, _, _) in stats.stats.values()) or 1.0
    for (file, line, name), (_, calls, tt, ct, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]:
        rows.append({"function": f"{Path(file).name}:{line} {name}", "calls": calls, "own_s": round(tt, 3),
                     "share": round(tt / total, 3)})
    return rows


def report(out: dict) -> bool:
    ok = True
    print(f"{'dialect':8}{'c1 gw/direct':>14}{'c8 gw/direct':>14}{'c8 floor/dir':>14}{'gw +TTFT ms':>13}{'floor +ms':>11}"
          f"{'gw−floor ms':>13}")
    for dialect in DIALECTS:
        row = out[dialect]
        r1, r8 = row["gateway_c1_tok_s"] / row["direct_c1_tok_s"], row["gateway_c8_tok_s"] / row["direct_c8_tok_s"]
        row["ratio_c1"], row["ratio_c8"] = r1, r8
        floor, over = row.get("floor_added_ttft_ms", float("nan")), row.get("gateway_over_floor_ms", float("nan"))
        f8 = row["floor_c8_tok_s"] / row["direct_c8_tok_s"] if "floor_c8_tok_s" in row else float("nan")
        row["floor_ratio_c8"] = f8
        print(f"{dialect:8}{r1:>14.3f}{r8:>14.3f}{f8:>14.3f}{row['gateway_added_ttft_ms']:>13.2f}{floor:>11.2f}{over:>13.2f}")
        checks = [("tok/s c=1 >= 0.97", r1 >= 0.97), ("tok/s c=8 >= 0.97", r8 >= 0.97)]
        if "gateway_over_floor_ms" in row:
            checks.append(("TTFT over floor <= 0.5 ms", over <= 0.5))
        if "litellm_added_ttft_ms" in row:
            row["gateway_over_litellm"] = row["gateway_added_ttft_ms"] / row["litellm_added_ttft_ms"]
            print(f"  LiteLLM added TTFT {row['litellm_added_ttft_ms']:.2f} ms; seekstack's is "
                  f"{row['gateway_over_litellm']:.2f} of it")
            checks.append(("added TTFT <= 1/4 of LiteLLM's", row["gateway_over_litellm"] <= 0.25))
        for name, passed in checks:
            print(f"  {'PASS' if passed else 'MISS'}  {name}")
            ok = ok and passed
    s = out["streams"]
    print(f"\n{s['streams']} concurrent streams: {s['tokens']} tokens in {s['wall_s']:.2f} s ({s['tok_s']:.0f} tok/s); "
          f"gateway CPU {s['gateway_cpu_s']:.2f} s = {s['cpu_us_per_token']:.0f} µs per streamed token")
    for row in out.get("profile_top", []):
        print(f"  {row['share']:6.1%}  {row['own_s']:7.3f} s  {row['calls']:>8}  {row['function']}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--itl-ms", type=float, default=10.0, help="The simulator's time between tokens.")
    parser.add_argument("--profile", action="store_true", help="Profile the gateway (cProfile; slows it down).")
    parser.add_argument("--litellm", action="store_true", help="Also pair LiteLLM's proxy (make bench-litellm).")
    parser.add_argument("--external", help="DIALECT=URL: a real engine already running (no simulators, no floor).")
    parser.add_argument("--served-name", help="With --external: the model id the engine serves.")
    parser.add_argument("--api-key-file", type=Path, help="With --external: the engine's API key.")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    out["all_pass"] = report(out)
    if args.output:
        args.output.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
