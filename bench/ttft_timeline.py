"""Where the CPU goes between a request and its first token: a scheduler trace (`perf sched`).

A diagnostic, not a target. One `seekstack serve` (tcp engine, default controls); direct and
gateway requests alternate (raw sockets, one-token decode) while `perf record` captures every
context switch on every CPU. For each request's window — the client's first byte to the first
content token — it sums the CPU time of the engine, the gateway, the client, other processes
and idle, and lists the gateway's runs inside the window (offset: duration, in ms).

Needs `perf` (Debian: linux-perf) and permission to trace the whole machine (root, or
kernel.perf_event_paranoid <= -1).

Usage: python bench/ttft_timeline.py [--pairs 60] [--show 8]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from gateway_vs_direct import start_server  # noqa: E402

BODY = json.dumps({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
                   "max_tokens": 2, "stream": True, "ignore_eos": True, "temperature": 0.7}).encode()
SWITCH = re.compile(r"\[(\d+)\]\s+([\d.]+): sched:sched_switch: .*?==> next_comm=.*? next_pid=(\d+)")
GROUPS = ("engine", "gateway", "client", "other", "idle")


def request_bytes(key: str | None) -> bytes:
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n")
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    return (head + "\r\n").encode() + BODY


def one(port: int, data: bytes) -> tuple[float, float | None]:
    """(client's first byte, first content token), CLOCK_MONOTONIC like the trace."""
    start = time.clock_gettime(time.CLOCK_MONOTONIC)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(data)
        first, buf = None, b""
        while chunk := s.recv(65536):
            buf += chunk
            if first is None and b'"content":"' in buf:
                first = time.clock_gettime(time.CLOCK_MONOTONIC)
            if b"[DONE]" in buf:
                break
    return start, first


def run_intervals(trace: str) -> list[tuple[int, float, float]]:
    """(thread id, start, end) of every stretch a thread ran, from the switch events."""
    running: dict[int, tuple[int, float]] = {}
    out = []
    for line in trace.splitlines():
        m = SWITCH.search(line)
        if not m:
            continue
        cpu, at, nxt = int(m.group(1)), float(m.group(2)), int(m.group(3))
        if cpu in running:
            tid, since = running[cpu]
            out.append((tid, since, at))
        running[cpu] = (nxt, at)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--show", type=int, default=8, help="gateway requests whose runs are listed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), slots=8, transport="tcp", controls=True)
        try:
            key = (Path(tmp) / "state" / "admin.key").read_text().strip()
            replica = httpx.get(url + "/admin/v1/replicas", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]
            targets = {"direct": (int(replica["base_url"].rsplit(":", 1)[1]), request_bytes(None)),
                       "gateway": (int(url.rsplit(":", 1)[1]), request_bytes(key))}
            for _ in range(10):
                for port, data in targets.values():
                    one(port, data)
            perf = subprocess.Popen(["perf", "record", "-a", "-k", "CLOCK_MONOTONIC", "-e", "sched:sched_switch",
                                     "-o", str(Path(tmp) / "perf.data")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
            if perf.poll() is not None:
                raise SystemExit(f"perf could not trace: {perf.stderr.read().decode().strip().splitlines()[-1:]} "
                                 "(run as root, or set kernel.perf_event_paranoid to -1)")
            windows = []
            for i in range(args.pairs):
                for name in ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct"):
                    windows.append((name, *one(*targets[name])))
            time.sleep(0.3)
            perf.send_signal(signal.SIGINT)
            perf.wait()
            groups = {tid: name for name, pid in (("gateway", proc.pid), ("engine", replica["pid"]), ("client", os.getpid()))
                      for tid in map(int, os.listdir(f"/proc/{pid}/task"))}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        trace = subprocess.run(["perf", "script", "-i", str(Path(tmp) / "perf.data"), "-F", "cpu,time,event,trace"],
                               capture_output=True, text=True).stdout
    runs = [(tid, groups.get(tid, "idle" if tid == 0 else "other"), s, e) for tid, s, e in run_intervals(trace)]
    cpu = {"direct": collections.defaultdict(list), "gateway": collections.defaultdict(list)}
    shown = 0
    print("gateway runs in a window (offset: duration, ms), then the first token:")
    for name, start, first in windows:
        if first is None:
            continue
        spent = collections.Counter()
        mine = []
        for _, group, s, e in runs:
            a, b = max(s, start), min(e, first)
            if b > a:
                spent[group] += (b - a) * 1000
                if group == "gateway":
                    mine.append(f"{(a - start) * 1000:.2f}: {(b - a) * 1000:.2f}")
        cpu[name]["window"].append((first - start) * 1000)
        for group in GROUPS:
            cpu[name][group].append(spent[group])
        if name == "gateway" and shown < args.show:
            shown += 1
            print("  " + "  ".join(mine) + f"  | first token {(first - start) * 1000:.2f}")
    print(f"\nCPU ms per window (median over {args.pairs}; two CPUs, so up to twice the window):")
    print(f"{'':10}" + "".join(f"{k:>10}" for k in ("window", *GROUPS)))
    for name, by_group in cpu.items():
        print(f"{name:10}" + "".join(f"{statistics.median(by_group[k]):>10.2f}" for k in ("window", *GROUPS)))


if __name__ == "__main__":
    main()
