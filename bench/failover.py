"""How fast a failed engine stops getting traffic: from its death (or hang) to its ejection.

Two `seekstack sim` engines (vLLM dialect) on fixed ports behind one `seekstack serve` (static
endpoints, round-robin). Each trial kills engine A with SIGKILL (or makes it hang: it accepts
and never answers), takes the time, and reads when the gateway ejected it (the breaker's
`ejected_at`, a Unix time: one clock for both processes). Then A is started again on its port
and the gateway takes it back before the next trial.

- idle: no traffic, only the health checks (every 0.25 s) can notice — the worst case;
- loaded: 4 clients send requests all along; a request that meets the dead engine ejects it
  and is answered by B (every request must succeed);
- hung: no traffic; two health checks in a row get no answer within 0.25 s.

Targets (issue #18): death to ejection p99 <= 500 ms; new traffic off it <= 1 s (an ejected
endpoint gets no new request, so this is the same instant, measured under load).

Usage: python bench/failover.py [--trials 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from governance_overhead import free_port, wait_http  # noqa: E402

SEEKSTACK = [sys.executable, "-m", "seekstack"]


class Sim:
    def __init__(self, tmp: Path, name: str):
        self.port = free_port()
        self.faults = tmp / f"{name}-faults.json"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.faults.write_text("{}")
        self.proc = subprocess.Popen([*SEEKSTACK, "sim", "--dialect", "vllm", "--model", "m", "--port", str(self.port),
                                      "--faults-file", str(self.faults), "--max-num-seqs", "64"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/sim/info")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        a, b = Sim(tmp, "a"), Sim(tmp, "b")
        a.start()
        b.start()
        port = free_port()
        config = tmp / "gw.yaml"
        config.write_text(yaml.safe_dump({
            "state_dir": str(tmp / "state"), "scheduler": {"policy": "round-robin"},
            "models": [{"name": "m", "context": 4096, "slots": 64,
                        "engine": {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}"]}}]}))
        gateway = subprocess.Popen([*SEEKSTACK, "serve", "--config", str(config), "--port", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
            key = (tmp / "state" / "admin.key").read_text().strip()
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
            results = run_trials(http, a, args.trials)
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)
            a.kill()
            b.kill()
    report(results)


def endpoint_a(http: httpx.Client) -> dict:
    return next(r for r in http.get("/admin/v1/replicas").json()["data"] if r["replica"] == 0)


def chat(http: httpx.Client) -> int:
    return http.post("/v1/chat/completions", json={"model": "m", "max_tokens": 4,
                                                   "messages": [{"role": "user", "content": "hi there"}]}).status_code


def take_back(http: httpx.Client, a: Sim) -> None:
    """Start A again and wait until the gateway routes to it in full (its breaker closed)."""
    if a.proc is None or a.proc.poll() is not None:
        a.start()
    a.faults.write_text("{}")
    deadline = time.monotonic() + 30
    while endpoint_a(http)["state"] != "ready":
        if time.monotonic() > deadline:
            raise RuntimeError(f"endpoint A did not come back: {endpoint_a(http)}")
        chat(http)
        time.sleep(0.05)


def wait_ejected(http: httpx.Client, since: float) -> float:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        breaker = endpoint_a(http)["breaker"]
        if breaker["state"] == "open" and (breaker["ejected_at"] or 0) >= since - 0.001:
            return breaker["ejected_at"] - since
        time.sleep(0.02)
    raise RuntimeError("endpoint A was not ejected within 10 s")


def run_trials(http: httpx.Client, a: Sim, trials: int) -> dict:
    out: dict[str, list[float]] = {"idle": [], "loaded": [], "hung": []}
    failures = 0
    for mode in ("idle", "loaded", "hung"):
        for _ in range(trials):
            take_back(http, a)
            time.sleep(0.1 + (len(out[mode]) % 10) * 0.025)  # spread the kill over the heartbeat's phase
            stop = threading.Event()
            statuses: list[int] = []
            loaders = []
            if mode == "loaded":
                def load():
                    with httpx.Client(base_url=str(http.base_url), headers=http.headers, timeout=30) as own:
                        while not stop.is_set():
                            statuses.append(chat(own))
                loaders = [threading.Thread(target=load) for _ in range(4)]
                for t in loaders:
                    t.start()
                time.sleep(0.2)
            since = time.time()
            if mode == "hung":
                a.faults.write_text(json.dumps({"*": {"hang": True}}))
                os.utime(a.faults)
            else:
                a.proc.send_signal(signal.SIGKILL)
            out[mode].append(wait_ejected(http, since))
            stop.set()
            for t in loaders:
                t.join()
            failures += sum(s != 200 for s in statuses)
            if mode == "hung":
                a.kill()
    return {"seconds": out, "failed_requests_loaded": failures}


def report(results: dict) -> None:
    s = results["seconds"]
    print(f"{'':8}{'n':>4}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for mode, values in s.items():
        print(f"{mode:8}{len(values):>4}{percentile(values, .5) * 1000:>9.0f}{percentile(values, .99) * 1000:>9.0f}"
              f"{max(values) * 1000:>9.0f}")
    print(f"requests failed under load while engines died: {results['failed_requests_loaded']}")
    death = s["idle"] + s["loaded"]
    checks = {"death to ejection p99 <= 500 ms (idle and loaded)": percentile(death, .99) <= 0.5,
              "traffic off under load p99 <= 1 s": percentile(s["loaded"], .99) <= 1.0,
              "hung engine ejected p99 <= 1 s": percentile(s["hung"], .99) <= 1.0,
              "no request failed under load": results["failed_requests_loaded"] == 0}
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "failover.json").write_text(json.dumps({**results, "checks": checks}, indent=2))


if __name__ == "__main__":
    main()
