"""Added latency at half capacity, open loop: requests arrive on their own schedule.

A stub OpenAI server answers instantly. In front of it, each measured in the same run:

- ``gateway``: seekstack with every default control on (API key, role check, quotas, PII mask,
  fail-closed audit);
- ``controls``: a bare ASGI app on uvicorn (the server the gateway runs on) with only
  seekstack's key check and fail-closed audit commit — the least the controls can cost;
- ``relay``: a TCP relay with no HTTP parsing — what one more process in the path costs;
- ``litellm`` (``--litellm``, needs ``make bench-litellm``): LiteLLM's proxy, the peer.

The load client and the stub keep to one core, so the proxy measured has the other to itself
(and may use both). Each proxy's capacity is measured first (closed loop, 32 connections).
Then requests arrive as a Poisson process at half the gateway's capacity (half LiteLLM's for
LiteLLM) to each proxy in turn, and to the stub alone at the same rate; the gateway is also
measured at a tenth of its capacity (``gateway/10``). Each latency counts from when the
request was due (queueing included). Each proxy's CPU is read from /proc meanwhile: its busy
fraction says how loaded "half capacity" really leaves it.

The controls floor and the bare app (``bare``: the same server with no controls) run at the
gateway's rate, and each again at half its own capacity (``controls@own/2``, ``bare@own/2``):
the target's own terms. The relay runs at each of those rates too (``relay@controls/2``,
``relay@bare/2``): where it adds little, the Python client keeps up at that rate and the tail
measured is the proxy's; where it adds much (thousands of arrivals a second on the client's
shared core), the client is part of the tail.

Before the load, a probe measures this machine's cold penalty: the same fixed piece of Python
timed back to back and after idle gaps.

After the table, the gateway's p50 and p99 in its own service times (S: its CPU per request
at that load), beside a single server's at the same load — first come first served, and
processor sharing, which is how requests on one event loop advance (a step each per turn) —
and the service time that would meet the target.

Target (issue #17): the gateway's added p99 (gateway − stub) <= 5 ms at half its capacity.

Usage: python bench/open_loop.py [--seconds 15] [--rounds 3] [--litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _http_load import chat_request, open_loop, run  # noqa: E402
from floors import cpu_seconds  # noqa: E402
from governance_overhead import free_port, start_gateway, start_litellm, wait_http  # noqa: E402


def cold_penalty(samples: int = 200) -> dict[float, tuple[float, float]]:
    """p50 and p99 (ms) of a fixed piece of Python (JSON, hashing, a regex, a dict: ~0.4 ms warm)
    run back to back and after sleeping 1, 5, 20 and 100 ms."""
    def work() -> None:
        body = {"model": "stub", "messages": [{"role": "user", "content": "my phone is 13812345678"}], "max_tokens": 16}
        for _ in range(40):
            text = json.dumps(body)
            json.loads(text)
            hashlib.sha256(text.encode()).hexdigest()
            re.search(r"1[3-9][0-9]{9}", text)
            {f"k{j}": j for j in range(20)}

    for _ in range(100):
        work()
    result = {}
    for idle in (0.0, 0.001, 0.005, 0.02, 0.1):
        times = []
        for _ in range(samples):
            if idle:
                time.sleep(idle)
            t0 = time.perf_counter()
            work()
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        result[idle] = (times[len(times) // 2], times[int(len(times) * 0.99)])
    return result


def sojourn_in_service_times(rho: float, shared: bool, n: int = 50_000, seed: int = 1) -> tuple[float, float]:
    """p50 and p99 of the time in system, in service times, of a single server with Poisson
    arrivals at load ``rho`` and a constant service time: first come first served, or
    processor sharing (``shared``: every request in the system advances at once, as requests
    do on one event loop, a step each per turn)."""
    import random

    rng, t, arrivals = random.Random(seed), 0.0, []
    for _ in range(n):
        t += rng.expovariate(rho)
        arrivals.append(t)
    times = []
    if not shared:
        free = 0.0
        for a in arrivals:
            free = max(a, free) + 1.0
            times.append(free - a)
    else:
        left: dict[int, float] = {}  # request -> service still owed
        now, i = 0.0, 0
        while i < n or left:
            k = len(left)
            finish = now + min(left.values()) * k if k else float("inf")
            if i < n and arrivals[i] < finish:
                for j in left:
                    left[j] -= (arrivals[i] - now) / k
                now, left[i], i = arrivals[i], 1.0, i + 1
                continue
            step = min(left.values())
            for j in list(left):
                left[j] -= step
                if left[j] <= 1e-12:
                    times.append(finish - arrivals[j])
                    del left[j]
            now = finish
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def pin(pid: int, cpu: int) -> None:
    """Keep every thread of ``pid`` (and those it starts later) on ``cpu``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def start_floor(kind: str, stub_port: int, state_dir: Path | None) -> tuple[subprocess.Popen, int, str | None]:
    port = free_port()
    extra = [str(state_dir)] if state_dir is not None else []
    proc = subprocess.Popen([sys.executable, str(HERE / "floor_proxy.py"), kind, str(stub_port), str(port), *extra])
    wait_http(f"http://127.0.0.1:{port}/health")
    key = (state_dir / "admin.key").read_text().strip() if state_dir is not None else None
    return proc, port, key


def measure_open(port: int, request: bytes, rate: float, seconds: float, pid: int | None) -> dict:
    before = cpu_seconds(pid) if pid else 0.0
    t0 = time.perf_counter()
    result = asyncio.run(open_loop("127.0.0.1", port, request, rate, seconds))
    if pid:
        result["busy"] = (cpu_seconds(pid) - before) / (time.perf_counter() - t0)
    bad = {s: n for s, n in result["statuses"].items() if s != 200}
    assert not bad, f"port {port}: non-200 answers {bad}"
    return result


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--litellm", action="store_true", help="LiteLLM's proxy too (make bench-litellm)")
    args = parser.parse_args()

    print("this machine's cold penalty: a fixed piece of Python, timed after an idle gap")
    for idle, (p50, p99) in cold_penalty().items():
        print(f"  idle {idle * 1000:5.0f} ms before: p50 {p50:.2f} ms  p99 {p99:.2f} ms")

    procs = []
    targets: dict[str, tuple[int, bytes, int]] = {}  # name -> (port, request, pid)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            stub_port = free_port()
            stub = subprocess.Popen([sys.executable, str(HERE / "stub_openai.py"), str(stub_port)])
            procs.append(stub)
            wait_http(f"http://127.0.0.1:{stub_port}/health")
            to_stub = chat_request(f"127.0.0.1:{stub_port}", None)
            gateway, port, key = start_gateway(tmp, "on", stub_port, controls=True)
            procs.append(gateway)
            targets["gateway"] = (port, chat_request(f"127.0.0.1:{port}", key), gateway.pid)
            (tmp / "controls").mkdir()
            proc, port, key = start_floor("json", stub_port, tmp / "controls")
            procs.append(proc)
            targets["controls"] = (port, chat_request(f"127.0.0.1:{port}", key), proc.pid)
            proc, port, _ = start_floor("json", stub_port, None)  # the server alone: no controls at all
            procs.append(proc)
            targets["bare"] = (port, chat_request(f"127.0.0.1:{port}", None), proc.pid)
            if args.litellm and (started := start_litellm(tmp, stub_port)) is not None:
                proc, port = started
                procs.append(proc)
                targets["litellm"] = (port, chat_request(f"127.0.0.1:{port}", "sk-bench-master"), proc.pid)
            relay_port = free_port()  # the floor: one more process in the path, doing nothing else
            relay = subprocess.Popen([sys.executable, str(HERE / "tcp_relay.py"), str(relay_port), str(stub_port)])
            procs.append(relay)
            wait_http(f"http://127.0.0.1:{relay_port}/health")

            targets["relay"] = (relay_port, chat_request(f"127.0.0.1:{relay_port}", None), relay.pid)
            if len(os.sched_getaffinity(0)) >= 2:  # the client and the stub keep to one core: the other is the proxy's
                os.sched_setaffinity(0, {0})
                pin(stub.pid, 0)
                print("CPU 0: the load client and the stub; the proxies may use both")

            capacity = {}
            for name, (port, request, _) in targets.items():
                if name == "relay":
                    continue
                slow = name == "litellm"  # tens of requests a second: fewer of them
                asyncio.run(run("127.0.0.1", port, request, 8, 100 if slow else 500))  # warm-up
                capacity[name] = asyncio.run(run("127.0.0.1", port, request, 32, 600 if slow else 6000))["rps"]
                print(f"{name:9} capacity {capacity[name]:7.0f} req/s (closed loop, 32 connections)")
            rates = {name: capacity["litellm" if name == "litellm" else "gateway"] / 2 for name in targets}
            for name in ("controls", "bare"):  # each floor at half its own capacity too: the target's own terms,
                targets[f"{name}@own/2"] = targets[name]  # and the relay at that rate: is the client keeping up?
                targets[f"relay@{name}/2"] = targets["relay"]
                rates[f"{name}@own/2"] = rates[f"relay@{name}/2"] = capacity[name] / 2
            targets["gateway/10"] = targets["gateway"]  # a tenth of its capacity: a tail that queueing does not explain
            rates["gateway/10"] = capacity["gateway"] / 10

            results: dict[str, list[dict]] = {name: [] for name in targets}
            stub_results: dict[str, list[dict]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (port, request, pid) in targets.items():
                    stub_results[name].append(measure_open(stub_port, to_stub, rates[name], args.seconds, None))
                    results[name].append(measure_open(port, request, rates[name], args.seconds, pid))
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()

    print(f"\n{'':16} {'rate':>6}  {'busy':>5}  {'p50':>7}  {'p99 (each round)':>26}  {'stub p99':>8}  {'added p99':>9}")
    added = {}
    for name, runs in results.items():
        p99 = median([r["p99_ms"] for r in runs])
        stub_p99 = median([r["p99_ms"] for r in stub_results[name]])
        added[name] = p99 - stub_p99
        rounds = ", ".join(f"{r['p99_ms']:.2f}" for r in runs)
        print(f"{name:16} {rates[name]:6.0f}  {median([r['busy'] for r in runs]):5.2f}  "
              f"{median([r['p50_ms'] for r in runs]):5.2f} ms  {rounds:>23} ms  {stub_p99:5.2f} ms  {added[name]:6.2f} ms")
    print(f"gateway's added p99 / the controls floor's (each at half its own capacity): "
          f"{added['gateway'] / added['controls@own/2']:.2f}  (the relay at the floor's rate adds "
          f"{added['relay@controls/2']:.2f} ms: what the client and the machine add there)")
    if "litellm" in added:
        print(f"gateway's added p99 / LiteLLM's (each at half its own capacity): {added['gateway'] / added['litellm']:.2f}")
    explain(results["gateway"], rates["gateway"], capacity["gateway"],
            median([r["p99_ms"] for r in stub_results["gateway"]]))
    print(f"{'PASS' if added['gateway'] <= 5 else 'MISS'}  gateway's added p99 at half its capacity "
          f"{added['gateway']:.2f} ms  (target <= 5; the controls floor at half its own: "
          f"{added['controls@own/2']:.2f} ms)")


def explain(runs: list[dict], rate: float, capacity: float, stub_p99: float) -> None:
    """The gateway's tail in its own service times, beside a single server's at the same load:
    queueing on one event loop, or something else (stalls)? And the service time 5 ms needs."""
    busy = median([r["busy"] for r in runs])
    service = busy / rate * 1000  # ms of CPU per request at this load
    p50, p99 = median([r["p50_ms"] for r in runs]), median([r["p99_ms"] for r in runs])
    fifo, shared = sojourn_in_service_times(busy, False), sojourn_in_service_times(busy, True)
    print(f"\ngateway at half capacity: {service:.3f} ms of CPU per request (at capacity {1000 / capacity:.3f} ms), "
          f"so {busy:.2f} busy")
    print(f"  measured           p50 {p50 / service:5.1f} S   p99 {p99 / service:5.1f} S   (S = {service:.3f} ms)")
    print(f"  one server, FIFO   p50 {fifo[0]:5.1f} S   p99 {fifo[1]:5.1f} S")
    print(f"  processor sharing  p50 {shared[0]:5.1f} S   p99 {shared[1]:5.1f} S")
    print(f"  added p99 <= 5 ms at this load needs S <= {(5 + stub_p99) / shared[1]:.3f} ms (sharing) "
          f"or {(5 + stub_p99) / fifo[1]:.3f} ms (FIFO)")


if __name__ == "__main__":
    main()
