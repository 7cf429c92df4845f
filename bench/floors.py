"""What a proxy costs at the least on this machine, beside what the gateway costs: added TTFT and CPU.

Four proxies in front of the same engine replica, in one run: the thinnest uvloop proxy
(asyncio streams, bytes relayed verbatim), a bare ASGI app on uvicorn (the server the gateway
must run on), that app with seekstack's key check and fail-closed audit commit before the
engine call (the least the default controls can cost), and `seekstack serve` with its
default controls (API key, audit, PII detect).
Requests rotate over direct and the proxies (order permuted every round) and
each proxy's TTFT is paired with the direct request of its round. CPU is each proxy process's
own (from /proc/PID/task/*/schedstat), per request of 2 tokens and per further token; the
gateway's idle background (heartbeats, timers) is measured first and subtracted.

Usage: python bench/floors.py [--rounds 200] [--engine-threads N]

`--engine-threads 1` leaves one of two cores to the proxies and the client: what the
numbers look like when the engine does not take every core.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from _load import Result, client_for, median, one_stream  # noqa: E402
from gateway_vs_direct import free_port, start_server  # noqa: E402

HERE = Path(__file__).parent
BODY = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
        "stream": True, "ignore_eos": True, "temperature": 0.7}
PROXIES = ("streams", "uvicorn", "controls", "seekstack")


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (ns precision, unlike /proc/PID/stat's ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except FileNotFoundError:  # a thread that just ended
            pass
    return total / 1e9


def start_floor(kind: str, engine_port: int, state_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    extra = [str(state_dir)] if kind == "controls" else []
    proc = subprocess.Popen([sys.executable, str(HERE / "floor_proxy.py"), kind, str(engine_port), str(port), *extra])
    for _ in range(100):  # listening yet?
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions"


async def measure(targets: dict[str, str], pids: dict[str, int], keys: dict[str, str], rounds: int) -> dict:
    headers = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
    clients = {name: client_for(url, headers=headers.get(name)) for name, url in targets.items()}
    short, long = {**BODY, "max_tokens": 2}, {**BODY, "max_tokens": 64}
    added: dict[str, list[float]] = {name: [] for name in PROXIES}
    cpu = {name: {"short": 0.0, "long": 0.0} for name in PROXIES}
    try:
        for name in targets:  # warm-up
            await one_stream(*clients[name], short, Result())
        idle_before = cpu_seconds(pids["seekstack"])
        await asyncio.sleep(2)
        idle_rate = (cpu_seconds(pids["seekstack"]) - idle_before) / 2
        orders = list(itertools.permutations(targets))
        for kind, body, n in (("short", short, rounds), ("long", long, 10)):
            for i in range(n):
                ttft = {}
                for name in orders[i % len(orders)]:
                    result, before, t0 = Result(), cpu_seconds(pids[name]) if name in pids else 0.0, time.monotonic()
                    await one_stream(*clients[name], body, result)
                    if name in pids:
                        spent = cpu_seconds(pids[name]) - before
                        if name == "seekstack":
                            spent -= idle_rate * (time.monotonic() - t0)
                        cpu[name][kind] += spent
                    ttft[name] = result.ttft[0]
                if kind == "short":
                    for name in PROXIES:
                        added[name].append(ttft[name] - ttft["direct"])
    finally:
        for client, _ in clients.values():
            await client.aclose()
    out = {}
    for name in PROXIES:
        per_request = cpu[name]["short"] / rounds
        out[name] = {"added_ttft_ms": median(added[name]) * 1000, "cpu_per_request_ms": per_request * 1000,
                     "cpu_per_token_ms": (cpu[name]["long"] / 10 - per_request) / 62 * 1000}
    out["seekstack_idle_cpu_percent"] = idle_rate * 100
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--engine-threads", type=int, default=None, help="engine CPU threads (default: all cores)")
    args = parser.parse_args()
    floors = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), slots=8, transport="tcp", controls=True, threads=args.engine_threads)
        try:
            key = (Path(tmp) / "state" / "admin.key").read_text().strip()
            engine = httpx.get(url + "/admin/v1/replicas", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["base_url"]
            engine_port = int(engine.rsplit(":", 1)[1])
            targets, pids = {"direct": engine + "/v1/chat/completions"}, {"seekstack": proc.pid}
            controls_state = Path(tmp) / "controls"
            for kind in ("streams", "uvicorn", "controls"):
                floor, targets[kind] = start_floor(kind, engine_port, controls_state)
                floors.append(floor)
                pids[kind] = floor.pid
            targets["seekstack"] = url + "/v1/chat/completions"
            keys = {"seekstack": key, "controls": (controls_state / "admin.key").read_text().strip()}
            m = asyncio.run(measure(targets, pids, keys, args.rounds))
        finally:
            for floor in floors:
                floor.kill()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print(f"{'':40}{'added TTFT p50':>16}{'CPU/request':>14}{'CPU/token':>12}")
    labels = {"streams": "uvloop streams proxy (floor)", "uvicorn": "bare ASGI app on uvicorn",
              "controls": "  + key check, audit commit", "seekstack": "seekstack (default controls)"}
    for name in PROXIES:
        r = m[name]
        print(f"{labels[name]:40}{r['added_ttft_ms']:>13.2f} ms{r['cpu_per_request_ms']:>11.2f} ms{r['cpu_per_token_ms']:>9.3f} ms")
    print(f"(seekstack's idle background, subtracted: {m['seekstack_idle_cpu_percent']:.2f}% of a core)")
    over = m["seekstack"]["added_ttft_ms"] - m["controls"]["added_ttft_ms"]
    print(f"seekstack over the least its controls can cost: {over:+.2f} ms TTFT, "
          f"{m['seekstack']['cpu_per_request_ms'] - m['controls']['cpu_per_request_ms']:+.2f} ms CPU per request")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "floors.json").write_text(json.dumps(m, indent=2))


if __name__ == "__main__":
    main()
