"""What the first request after an idle unload waits, against what loading the model costs anyway.

One `seekstack serve` with the embedded model (real llama.cpp) and `keep_alive: 1`. Each trial:

- warm: time to first token of a streamed request while the model has been loaded a while;
- floor: an operator's `POST /admin/v1/models/NAME/load` after `unload` — the time until a
  replica is ready, which any way of loading the model pays — plus the time to first token of
  the first request after it (a fresh engine answers its first request slower than later ones);
- cold: the model unloaded for being idle, then one streamed request: its time to first token.

What keep_alive adds is cold − floor: the on-demand path itself (waking, the wait for the
load, then the request's own way through). No target is set by an issue; the number is
recorded in bench/README.md.

Usage: python bench/keep_alive.py [--trials 5]
"""

from __future__ import annotations

import argparse
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
from governance_overhead import free_port, wait_http  # noqa: E402

SEEKSTACK = [sys.executable, "-m", "seekstack"]
MODEL = "smollm2"


def ttft(http: httpx.Client) -> float:
    began = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json={"model": MODEL, "max_tokens": 4, "stream": True,
                                                           "messages": [{"role": "user", "content": "Hello"}]}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                return time.perf_counter() - began
    raise RuntimeError("the stream carried no token")


def state(http: httpx.Client) -> str:
    return next(m["state"] for m in http.get("/v1/models").json()["data"] if m["id"] == MODEL)


def until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        config = tmp / "serve.yaml"
        config.write_text(yaml.safe_dump({"state_dir": str(tmp / "state"), "models": [
            {"name": MODEL, "source": "embedded", "context": 512, "slots": 2, "keep_alive": 1}]}))
        proc = subprocess.Popen([*SEEKSTACK, "serve", "--config", str(config), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/healthz", timeout=120)
            key = (tmp / "state" / "admin.key").read_text().strip()
            http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
            until(lambda: state(http) == "ready", 120)
            warm, floor, cold = [], [], []
            for _ in range(args.trials):
                ttft(http)  # the first answer after a load fills caches: not counted
                warm.append(min(ttft(http) for _ in range(3)))
                http.post(f"/admin/v1/models/{MODEL}/unload").raise_for_status()
                began = time.perf_counter()
                http.post(f"/admin/v1/models/{MODEL}/load").raise_for_status()
                floor.append(time.perf_counter() - began + ttft(http))
                until(lambda: state(http) == "unloaded")  # idle for keep_alive: unloaded by the gateway
                cold.append(ttft(http))
            med = statistics.median
            print(f"trials {args.trials}: warm TTFT {med(warm) * 1000:.0f} ms; floor (load, then the first TTFT) "
                  f"{med(floor) * 1000:.0f} ms; cold TTFT {med(cold) * 1000:.0f} ms (medians)")
            print(f"keep_alive's on-demand path adds {(med(cold) - med(floor)) * 1000:+.0f} ms over loading the model "
                  f"and answering ({med(cold) / med(floor):.2f}× the floor)")
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
