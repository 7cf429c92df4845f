"""What the first request after an idle unload waits, against what loading the model costs anyway.

One `seekstack serve` with the embedded model (real llama.cpp) and `keep_alive: 1`. Each trial:

- warm: time to first token of a streamed request while the model has been loaded a while;
- floor: an operator's `POST /admin/v1/models/NAME/load` after `unload` — the time until a
  replica is ready, which any way of loading the model pays — plus the time to first token of
  the first request after it (a fresh engine answers its first request slower than later ones);
- cold: the model unloaded for being idle, then one streamed request: its time to first token.

What keep_alive adds is cold − floor: the on-demand path itself (waking, the wait for the
load, then the request's own way through).

Then models that take turns: the embedded model as ``a`` and ``b``, each with a keep_alive, and
a memory budget that holds one. Each trial:

- floor: an operator unloads the loaded one and loads the other, then the first request's TTFT;
- switch: a request for the unloaded one while the other is loaded and idle — it unloads that
  one, loads its own, and answers: its TTFT.

What taking turns adds is switch − floor. No target is set by an issue; the numbers are
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


def ttft(http: httpx.Client, model: str = MODEL) -> float:
    began = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json={"model": model, "max_tokens": 4, "stream": True,
                                                           "messages": [{"role": "user", "content": "Hello"}]}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                return time.perf_counter() - began
    raise RuntimeError("the stream carried no token")


def state(http: httpx.Client, model: str = MODEL) -> str:
    return next(m["state"] for m in http.get("/v1/models").json()["data"] if m["id"] == model)


def until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def serving(tmp: Path, config: dict):
    """Start `seekstack serve` on ``config``; yield an authenticated client, then stop it."""
    port = free_port()
    path = tmp / "serve.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp / "state"), **config}))
    proc = subprocess.Popen([*SEEKSTACK, "serve", "--config", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", timeout=120)
        key = (tmp / "state" / "admin.key").read_text().strip()
        yield httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    finally:
        proc.terminate()
        proc.wait(60)


def idle_unload(tmp: Path, trials: int) -> None:
    for http in serving(tmp, {"models": [{"name": MODEL, "source": "embedded", "context": 512, "slots": 2,
                                          "keep_alive": 1}]}):
        until(lambda: state(http) == "ready", 120)
        warm, floor, cold = [], [], []
        for _ in range(trials):
            ttft(http)  # the first answer after a load fills caches: not counted
            warm.append(min(ttft(http) for _ in range(3)))
            http.post(f"/admin/v1/models/{MODEL}/unload").raise_for_status()
            began = time.perf_counter()
            http.post(f"/admin/v1/models/{MODEL}/load").raise_for_status()
            floor.append(time.perf_counter() - began + ttft(http))
            until(lambda: state(http) == "unloaded")  # idle for keep_alive: unloaded by the gateway
            cold.append(ttft(http))
        med = statistics.median
        print(f"trials {trials}: warm TTFT {med(warm) * 1000:.0f} ms; floor (load, then the first TTFT) "
              f"{med(floor) * 1000:.0f} ms; cold TTFT {med(cold) * 1000:.0f} ms (medians)")
        print(f"keep_alive's on-demand path adds {(med(cold) - med(floor)) * 1000:+.0f} ms over loading the model "
              f"and answering ({med(cold) / med(floor):.2f}× the floor)")


def taking_turns(tmp: Path, trials: int) -> None:
    model = {"source": "embedded", "context": 512, "slots": 1, "prompt_cache_mib": 0, "keep_alive": 3600}
    for http in serving(tmp, {"supervisor": {"memory_budget_gb": 0.3},
                              "models": [{"name": "a", **model}, {"name": "b", **model}]}):
        until(lambda: state(http, "a") == "ready", 120)
        floor, switch = [], []
        loaded, other = "a", "b"  # a loaded at start, b left unloaded: it loads on demand
        for _ in range(trials):
            began = time.perf_counter()  # the floor: an operator swaps them, then the first answer
            http.post(f"/admin/v1/models/{loaded}/unload").raise_for_status()
            http.post(f"/admin/v1/models/{other}/load").raise_for_status()
            floor.append(time.perf_counter() - began + ttft(http, other))
            http.post(f"/admin/v1/models/{loaded}/load").raise_for_status()  # makes room: `other` (idle) unloaded
            assert state(http, other) == "unloaded", "the operator's load did not make room"
            ttft(http, loaded)
            switch.append(ttft(http, other))  # this request unloads `loaded` (idle) and loads `other`
            assert state(http, loaded) == "unloaded", "the request did not make room"
            loaded, other = other, loaded
        med = statistics.median
        print(f"taking turns, trials {trials}: floor (unload one, load the other, first TTFT) {med(floor) * 1000:.0f} "
              f"ms; switch (a request for the unloaded one) {med(switch) * 1000:.0f} ms (medians)")
        print(f"taking turns adds {(med(switch) - med(floor)) * 1000:+.0f} ms over swapping them by hand "
              f"({med(switch) / med(floor):.2f}× the floor)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        (Path(tmp_name) / "idle").mkdir()
        (Path(tmp_name) / "turns").mkdir()
        idle_unload(Path(tmp_name) / "idle", args.trials)
        taking_turns(Path(tmp_name) / "turns", args.trials)


if __name__ == "__main__":
    main()
