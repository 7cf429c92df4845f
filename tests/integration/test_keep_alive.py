"""keep_alive on a real `seekstack serve` (traffic/keep_alive.py): a model idle for its keep_alive
is unloaded — its engine process gone — and the next requests load it once and are answered; a
stream longer than keep_alive keeps its model loaded; a model an operator unloaded stays
unloaded. Each unload and load is in the audit log."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
from openai import OpenAI

from conftest import Server, as_key, auditor_key
from test_supervision import wait_until


def state(server: Server, model: str) -> str:
    [entry] = [m for m in server.http.get("/v1/models").json()["data"] if m["id"] == model]
    return entry["state"]


def test_an_idle_model_is_unloaded_and_its_next_requests_load_it_once(tmp_path):
    server = Server(tmp_path, {"models": [{"name": "smollm2", "source": "embedded", "context": 512, "slots": 2,
                                           "keep_alive": 3}]}).start()
    client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=120)

    def ask(_: int = 0) -> str:
        answer = client.chat.completions.create(model="smollm2", max_tokens=8,
                                                messages=[{"role": "user", "content": "Hello"}])
        return answer.choices[0].message.content

    [replica] = server.replicas()
    engine = psutil.Process(replica["pid"])
    assert ask()
    ps = server.http.get("/api/ps").json()["models"]  # Ollama's view: loaded, and until when
    expires = dt.datetime.fromisoformat(ps[0]["expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(0) < expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(seconds=3.5), ps
    assert wait_until(lambda: state(server, "smollm2") == "unloaded", 30), server.replicas()
    assert wait_until(lambda: not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE, 10)  # memory freed
    assert server.http.get("/api/ps").json()["models"] == []
    metrics = server.http.get("/metrics").text  # unloaded on purpose: no replica "down" for an alert to fire on
    assert 'seekstack_replica_up{' not in metrics and 'seekstack_model_ready{model="smollm2"} 0.0' in metrics
    assert server.http.get("/readyz").status_code == 200  # the gateway still serves: the model loads on demand

    with ThreadPoolExecutor(4) as pool:  # four requests arrive while it is unloaded: one load, four answers
        answers = list(pool.map(ask, range(4)))
    assert all(answers), answers
    [replica] = server.replicas()
    assert replica["state"] == "ready" and replica["pid"] != engine.pid

    auditor = as_key(server, auditor_key(server))
    [unloaded] = auditor.get("/admin/v1/audit", params={"event": "model_unload"}).json()["data"]
    assert unloaded["model"] == "smollm2" and unloaded["reason"] == "keep_alive" and unloaded["idle_s"] >= 3
    [loaded] = auditor.get("/admin/v1/audit", params={"event": "model_load"}).json()["data"]
    assert loaded["model"] == "smollm2" and loaded["ready"] is True and loaded["waited_s"] >= 0
    metrics = server.http.get("/metrics").text
    assert 'seekstack_keep_alive_actions_total{action="unload",model="smollm2"} 1.0' in metrics
    assert 'seekstack_keep_alive_actions_total{action="load",model="smollm2"} 1.0' in metrics
    assert 'seekstack_replica_up{engine="llamacpp",model="smollm2",replica="0"} 1.0' in metrics
    log = server.log_path.read_text()
    assert "model smollm2 unloaded: idle for" in log and "model smollm2 loaded on demand in" in log


def simulated(keep_alive: float) -> dict:
    return {"models": [{"name": "m", "source": "embedded", "context": 512, "slots": 2, "prompt_cache_mib": 0,
                        "engine": {"kind": "llamacpp", "simulate": True}, "keep_alive": keep_alive}]}


def test_a_stream_longer_than_keep_alive_keeps_its_model_loaded(tmp_path):
    """Simulated llama.cpp (it stands in for the engine and streams at a set pace): a 5 s stream
    through a model whose keep_alive is 1 s is answered whole, the model loaded throughout."""
    server = Server(tmp_path, simulated(1))
    server.env = {"SEEKSTACK_SIM_OPTIONS": "--itl-ms 50 --output-len 100"}
    server.start()
    states: list[str] = []

    async def stream_and_watch() -> str:
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     headers={"Authorization": f"Bearer {server.key}"}) as http:
            async def watch():
                while True:
                    states.append((await http.get("/v1/models")).json()["data"][0]["state"])
                    await asyncio.sleep(0.2)
            watching = asyncio.ensure_future(watch())
            try:
                r = await http.post("/v1/chat/completions", json={"model": "m", "stream": True, "messages": [
                    {"role": "user", "content": "go on"}]})
                return r.text
            finally:
                watching.cancel()

    text = asyncio.run(stream_and_watch())
    assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text, text[-500:]
    assert len(states) >= 20 and set(states) == {"ready"}, states
    assert wait_until(lambda: state(server, "m") == "unloaded", 10)  # and after it, idle, it goes


def test_a_model_an_operator_unloaded_is_not_loaded_by_a_request(tmp_path):
    server = Server(tmp_path, simulated(60)).start()
    body = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    assert server.http.post("/admin/v1/models/m/unload").status_code == 200
    refused = server.http.post("/v1/chat/completions", json=body)
    assert refused.status_code == 503 and "seekstack models load m" in refused.json()["error"]["message"], refused.text
    assert state(server, "m") == "unloaded"
    assert server.http.post("/admin/v1/models/m/load").status_code == 200
    assert server.http.post("/v1/chat/completions", json=body).status_code == 200


def test_a_model_that_cannot_be_loaded_again_answers_503_saying_why_then_recovers(tmp_path):
    """The engine started on demand does not answer (the simulator's `hang` fault, health checks
    included): the request that woke it gets 503 once the startup timeout has passed, naming the
    reason; the supervisor goes on restarting it, and once it answers, requests do too."""
    faults = tmp_path / "faults.json"
    faults.write_text("{}")
    server = Server(tmp_path, {**simulated(1), "supervisor": {"startup_timeout": 3}})
    server.env = {"SEEKSTACK_SIM_OPTIONS": f"--faults-file {faults}"}
    server.start()
    assert wait_until(lambda: state(server, "m") == "unloaded", 10)
    faults.write_text(json.dumps({"*": {"hang": True}}))  # read by the engine started next
    body = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    failed = server.http.post("/v1/chat/completions", json=body)
    assert failed.status_code == 503 and failed.headers["retry-after"] == "10", failed.text
    assert "loads on demand (keep_alive), and no replica was ready within the startup timeout" in failed.json()["error"]["message"]
    faults.write_text("{}")
    assert wait_until(lambda: server.http.post("/v1/chat/completions", json=body).status_code == 200, 60)
