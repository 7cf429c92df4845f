"""Supervisor: crash recovery with backoff, routing around dead replicas, 503 + Retry-After when none is left."""

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import Server, pid_alive
from hfdir import make_hf_dir

HELLO = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def supervised(tmp_path_factory):
    config = {
        "supervisor": {"backoff_initial": 0.5},
        "models": [
            {"name": "pair", "source": "embedded", "replicas": 2, "context": 512, "slots": 2, "threads": 1},
            {"name": "solo", "source": "embedded", "replicas": 1, "context": 512, "slots": 1, "threads": 1},
        ],
    }
    srv = Server(tmp_path_factory.mktemp("sup"), config, name="supervised").start()
    yield srv
    srv.stop()


def wait_until(predicate, timeout=30.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def chat(server, model, **extra):
    return server.http.post("/v1/chat/completions", timeout=30,
                            json={"model": model, "messages": HELLO, "max_tokens": 3, **extra})


def test_killed_replica_is_restarted_and_no_request_fails(supervised):
    before = {r["replica"]: r for r in supervised.replicas() if r["model"] == "pair"}
    victim = before[0]
    statuses = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            statuses.append(chat(supervised, "pair").status_code)

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(0.3)
    os.kill(victim["pid"], signal.SIGKILL)
    restarted = wait_until(lambda: any(r["model"] == "pair" and r["replica"] == 0 and r["state"] == "ready"
                                       and r["pid"] != victim["pid"] for r in supervised.replicas()))
    time.sleep(0.5)  # keep the load on past the restart window
    stop.set()
    worker.join()
    assert restarted
    after = {r["replica"]: r for r in supervised.replicas() if r["model"] == "pair"}
    assert after[0]["restarts"] == 1 and after[0]["pid"] != victim["pid"]
    assert after[1]["pid"] == before[1]["pid"] and after[1]["restarts"] == 0
    assert not pid_alive(victim["pid"])
    # The other replica carried the load; no request failed, during or after the restart.
    assert len(statuses) > 5 and set(statuses) == {200}, statuses


def test_no_healthy_replica_is_503_with_retry_after_then_recovers(supervised):
    victim = next(r for r in supervised.replicas() if r["model"] == "solo")
    os.kill(victim["pid"], signal.SIGKILL)
    assert wait_until(lambda: next(r for r in supervised.replicas() if r["model"] == "solo")["state"] != "ready", 5)
    r = chat(supervised, "solo")
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "engine_unavailable"
    # the gateway stays ready (it serves "pair"); the model's own state says it is down
    ready = supervised.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"]["solo"] != "ready", ready.text
    assert supervised.http.get("/healthz").json()["models"]["solo"] in ("down", "starting")
    assert {m["id"]: m["state"] for m in supervised.http.get("/v1/models").json()["data"]}["solo"] != "ready"
    metrics = supervised.http.get("/metrics").text
    assert 'seekstack_model_ready{model="solo"} 0.0' in metrics and 'seekstack_model_ready{model="pair"} 1.0' in metrics
    # the restart window passes; then every request succeeds again
    assert wait_until(lambda: supervised.http.get("/healthz").json()["models"]["solo"] == "ready", 30)
    assert [chat(supervised, "solo").status_code for _ in range(5)] == [200] * 5


def test_repeated_crashes_back_off_exponentially(supervised):
    """Kill the same replica twice in a row: the second restart waits twice as long as the first."""
    def solo() -> dict:
        return next(r for r in supervised.replicas() if r["model"] == "solo")

    def kill_and_time() -> tuple[float, float]:
        """(the backoff the supervisor logged, seconds from the kill to the new process)."""
        victim = solo()
        t0 = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)
        assert wait_until(lambda: solo()["pid"] not in (None, victim["pid"]), 60, 0.02)
        spawned = time.monotonic() - t0
        assert wait_until(lambda: solo()["state"] == "ready", 60)
        logged = re.findall(r"replica solo/0 exited \(code -?\d+\); restarting in ([\d.]+)s",
                            supervised.log_path.read_text())
        return float(logged[-1]), spawned

    restarts = solo()["restarts"]
    (first, first_took), (second, second_took) = kill_and_time(), kill_and_time()
    assert solo()["restarts"] == restarts + 2
    assert second == 2 * first  # exponential (backoff_initial 0.5 s: 0.5, 1, 2 …)
    assert first_took >= first and second_took >= second  # and each was really waited out


def test_engines_run_niced_below_the_gateway(supervised):
    """Every engine thread yields the CPU to the gateway when cores are saturated (supervisor.engine_nice)."""
    for replica in supervised.replicas():
        pid = replica["pid"]
        threads = os.listdir(f"/proc/{pid}/task")
        assert len(threads) > 1  # llama.cpp's worker threads exist by now, and inherited the value
        for tid in threads:
            assert os.getpriority(os.PRIO_PROCESS, int(tid)) == 5, (replica["model"], tid)
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1":
            # the engine runs in its own session, so the kernel weighs it as a group: the group is niced too
            assert Path(f"/proc/{pid}/autogroup").read_text().split()[-1] == "5", replica["model"]
    assert os.getpriority(os.PRIO_PROCESS, supervised.proc.pid) == 0


def test_an_engine_that_cannot_start_says_why_in_the_gateways_log(tmp_path):
    """An engine that exits before it was ever ready (here the simulated vLLM, given an option it
    does not know; in a container image without libgomp, llama.cpp) has its last line in the
    gateway's own log, beside the exit code, instead of only in the replica's log file."""
    srv = Server(tmp_path, {"supervisor": {"backoff_initial": 0.5}, "models": [
        {"name": "broken", "path": str(make_hf_dir(tmp_path / "m")), "context": 512, "slots": 2,
         "engine": {"kind": "vllm", "simulate": True}}]}, name="broken")
    srv.env = {"SEEKSTACK_SIM_OPTIONS": "--no-such-option"}
    with pytest.raises(RuntimeError, match="serve not ready"):
        srv.start(timeout=8)
    said = re.findall(r"replica broken/0 exited \(code 2\) before it was ready: (.*?); restarting in", srv.log_path.read_text())
    assert said and "unrecognized arguments: --no-such-option" in said[0], srv.log_path.read_text()[-2000:]
