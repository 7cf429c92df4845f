"""Process lifecycle: drain on SIGTERM, no orphans ever (SIGKILL of the gateway included), disconnect cancels."""

import json
import signal
import threading
import time

import httpx
import pytest

from conftest import Server, engine_predicted, engine_request, pid_alive

MODEL = {"name": "m", "source": "embedded", "context": 1024, "slots": 2, "replicas": 2, "threads": 1}
LONG = {"model": "m", "messages": [{"role": "user", "content": "Tell me a long story."}], "stream": True,
        "ignore_eos": True}


def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigkill_of_serve_leaves_no_engine_behind(tmp_path):
    srv = Server(tmp_path, {"models": [MODEL]}).start()
    pids = [r["pid"] for r in srv.replicas()]
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids)), [p for p in pids if pid_alive(p)]


def test_sigterm_drains_in_flight_stream_then_stops_children(tmp_path):
    srv = Server(tmp_path, {"models": [MODEL], "server": {"drain_timeout": 30}}).start()
    pids = [r["pid"] for r in srv.replicas()]
    events: list[str] = []
    started = threading.Event()

    def stream():
        with srv.http.stream("POST", "/v1/chat/completions", json={**LONG, "max_tokens": 120}, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    started.set()

    worker = threading.Thread(target=stream)
    worker.start()
    assert started.wait(30)
    srv.proc.send_signal(signal.SIGTERM)
    worker.join(60)
    srv.proc.wait(60)
    # the in-flight answer was finished, not cut
    assert events[-1] == "[DONE]"
    tokens = sum(1 for e in events[:-1] if json.loads(e)["choices"] and json.loads(e)["choices"][0]["delta"].get("content"))
    assert tokens == 120
    assert wait_until(lambda: not any(pid_alive(p) for p in pids))
    # new connections are refused once draining began
    with pytest.raises(httpx.TransportError):
        srv.http.get("/healthz", timeout=2)


def test_client_disconnect_cancels_engine_work(tmp_path):
    srv = Server(tmp_path, {"models": [{**MODEL, "replicas": 1}]}).start()
    engine = srv.replicas()[0]["base_url"]
    before = engine_predicted(engine)
    with srv.http.stream("POST", "/v1/chat/completions", json={**LONG, "max_tokens": 900}, timeout=60) as r:
        got = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                got += 1
                if got == 5:
                    break  # leave mid-stream: closing the response drops the connection
    # the engine's slot goes idle long before 900 tokens would have been produced
    assert wait_until(lambda: not any(s["is_processing"] for s in engine_request(engine, "GET", "/slots").json()), 20)
    produced = engine_predicted(engine) - before
    assert produced < 300, produced
    # and the model still serves
    ok = srv.http.post("/v1/chat/completions", json={"model": "m", "messages": LONG["messages"], "max_tokens": 3})
    assert ok.status_code == 200
    srv.stop()


def test_client_leaving_a_non_streamed_request_cancels_engine_work_on_a_busy_engine(tmp_path):
    """A client that times out on a long non-streamed answer frees the engine's slot, even while
    another request keeps the engine busy (llama.cpp alone would then finish it for nobody)."""
    srv = Server(tmp_path, {"models": [{**MODEL, "replicas": 1}]}).start()
    engine = srv.replicas()[0]["base_url"]
    before = engine_predicted(engine)
    other_started, other_tokens = threading.Event(), []

    def other():
        with srv.http.stream("POST", "/v1/chat/completions", json={**LONG, "max_tokens": 300}, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    other_tokens.append(line)
                    other_started.set()

    worker = threading.Thread(target=other)
    worker.start()
    assert other_started.wait(30)
    with pytest.raises(httpx.ReadTimeout):
        srv.http.post("/v1/chat/completions", json={**LONG, "stream": False, "max_tokens": 900},
                      timeout=httpx.Timeout(60, read=1.0))
    worker.join(120)
    assert wait_until(lambda: not any(s["is_processing"] for s in engine_request(engine, "GET", "/slots").json()), 20)
    produced = engine_predicted(engine) - before
    assert produced < 300 + 300, produced  # the other answer's 300 and a cut-short part of the 900
    ok = srv.http.post("/v1/chat/completions", json={"model": "m", "messages": LONG["messages"], "max_tokens": 3})
    assert ok.status_code == 200
    srv.stop()
