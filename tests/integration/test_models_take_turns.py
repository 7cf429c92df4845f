"""Models that do not all fit take turns (traffic/keep_alive.py, planner/admission.py): with a
memory budget that holds one of two models with a keep_alive, `seekstack serve` starts, loads
the first, and a request for the other unloads the least recently used idle one to make room.
A model with a request in flight is never unloaded for another: the other's request waits, and
is refused with 503 (an operator's load with 409) when it would wait past the startup timeout."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time

import httpx
import psutil
import yaml
from openai import OpenAI

from conftest import SEEKSTACK, Server, as_key, auditor_key
from test_keep_alive import state
from test_supervision import wait_until


def one_at_a_time(engine: dict | None = None) -> dict:
    """Two models of ~0.245 GB each (the embedded model, context 512 × 1 slot, no prompt cache)
    and a budget of 0.3 GB: one of them fits at a time."""
    model = {"source": "embedded", "context": 512, "slots": 1, "prompt_cache_mib": 0, "keep_alive": 3600,
             **({"engine": engine} if engine else {})}
    return {"models": [{"name": "a", **model}, {"name": "b", **model}], "supervisor": {"memory_budget_gb": 0.3}}


def engine_pid(server: Server, model: str) -> int | None:
    [replica] = [r for r in server.replicas() if r["model"] == model]
    return replica["pid"]


def test_a_request_for_an_unloaded_model_unloads_the_least_recently_used_idle_one(tmp_path):
    """Real llama.cpp, the embedded model under two names."""
    server = Server(tmp_path, one_at_a_time()).start()
    log = server.log_path.read_text()
    assert "a, b (keep_alive) load on demand, taking turns" in log, log
    assert "model b left unloaded at start" in log
    assert state(server, "a") == "ready" and state(server, "b") == "unloaded"
    assert server.http.get("/readyz").status_code == 200
    ps = subprocess.run([*SEEKSTACK, "ps", "--url", server.url, "--api-key", server.key], capture_output=True,
                        text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    [row] = [line for line in ps.stdout.splitlines() if line.strip("│ ").startswith("b ")]
    assert "unloaded (loads on request)" in row, ps.stdout
    from seekstack.governance.sessions import COOKIE

    session = {COOKIE: httpx.post(server.url + "/console/session",
                                  headers={"Authorization": f"Bearer {server.key}"}).cookies[COOKIE]}
    for lang, note in (("en", "loads on its next request"), ("zh-CN", "下一个请求到来时加载")):
        page = httpx.get(server.url + "/console/models", params={"lang": lang}, cookies=session).text
        headings = re.findall(r'<h2 id="dep-\d+">(.*?)</h2>', page, re.S)
        assert [note in h for h in headings] == [False, True], headings  # a: loaded; b: loads on request
    client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=120)

    def ask(model: str) -> str:
        return client.chat.completions.create(model=model, max_tokens=8,
                                              messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content

    first_a = psutil.Process(engine_pid(server, "a"))
    assert ask("b")  # a is idle: unloaded to make room, then b loads and answers
    assert state(server, "a") == "unloaded" and state(server, "b") == "ready"
    assert wait_until(lambda: not first_a.is_running() or first_a.status() == psutil.STATUS_ZOMBIE, 10)
    assert ask("a")  # and back: b, now the idle one, makes room for a
    assert state(server, "a") == "ready" and state(server, "b") == "unloaded"
    assert engine_pid(server, "a") != first_a.pid

    auditor = as_key(server, auditor_key(server))
    unloads = auditor.get("/admin/v1/audit", params={"event": "model_unload"}).json()["data"]
    assert sorted((u["model"], u["reason"], u["for_model"]) for u in unloads) == [("a", "room", "b"), ("b", "room", "a")]
    loads = auditor.get("/admin/v1/audit", params={"event": "model_load"}).json()["data"]
    assert sorted((u["model"], u["ready"]) for u in loads) == [("a", True), ("b", True)]
    metrics = server.http.get("/metrics").text
    for model in "ab":
        assert f'seekstack_keep_alive_actions_total{{action="evict",model="{model}"}} 1.0' in metrics
    assert "seekstack_memory_budget_bytes 3e+08" in metrics  # the plan: a loaded now, b not
    assert re.search(r'seekstack_memory_planned_bytes\{model="a"\} 2\.4\d+e\+08', metrics), metrics
    assert 'seekstack_memory_planned_bytes{model="b"}' not in metrics
    assert "model a unloaded to make room for b: idle for" in server.log_path.read_text()


def test_of_three_models_the_least_recently_used_idle_one_makes_room(tmp_path):
    """Simulated llama.cpp: room for two of a, b, c. a and b load at start; a is used after b, so
    a request for c unloads b, and a stays."""
    config = one_at_a_time({"kind": "llamacpp", "simulate": True})
    config["models"].append({**config["models"][1], "name": "c"})
    config["supervisor"]["memory_budget_gb"] = 0.6
    server = Server(tmp_path, config).start()
    assert [state(server, m) for m in "abc"] == ["ready", "ready", "unloaded"]

    def ask(model: str) -> int:
        return server.http.post("/v1/chat/completions", json={"model": model, "max_tokens": 2, "messages": [
            {"role": "user", "content": "hi"}]}).status_code

    assert [ask("b"), ask("a"), ask("c")] == [200, 200, 200]
    assert [state(server, m) for m in "abc"] == ["ready", "unloaded", "ready"]


def test_a_model_a_reload_adds_that_does_not_fit_now_is_added_unloaded_and_loads_on_request(tmp_path):
    """Simulated llama.cpp: a serves alone; a reload adds b, which does not fit beside a."""
    config = one_at_a_time({"kind": "llamacpp", "simulate": True})
    both = config["models"]
    server = Server(tmp_path, {**config, "models": both[:1]}).start()
    on_disk = yaml.safe_load(server.config_path.read_text())
    server.config_path.write_text(yaml.safe_dump({**on_disk, "models": both}))
    result = server.http.post("/admin/v1/config/reload")
    assert result.status_code == 200 and result.json()["added"] == ["b"], result.text
    assert [state(server, m) for m in "ab"] == ["ready", "unloaded"]
    [b] = [r for r in server.http.get("/admin/v1/replicas").json()["data"] if r["model"] == "b"]
    assert b["on_demand"] is True and b["pid"] is None  # no engine started for it
    assert server.http.post("/v1/chat/completions", json={"model": "b", "max_tokens": 2, "messages": [
        {"role": "user", "content": "hi"}]}).status_code == 200
    assert [state(server, m) for m in "ab"] == ["unloaded", "ready"]
    assert "model b added unloaded: it does not fit the memory plan" in server.log_path.read_text()


def test_requests_for_two_unloaded_models_at_once_take_turns_and_never_overfill_the_plan(tmp_path):
    """Simulated llama.cpp, room for one of a, b, c: requests for b and c arrive together while a
    is loaded. Both are answered, one model after the other; at no poll (every 20 ms) were two
    models loaded or starting at once."""
    config = one_at_a_time({"kind": "llamacpp", "simulate": True})
    config["models"].append({**config["models"][1], "name": "c"})
    server = Server(tmp_path, config).start()
    seen: list[list[str]] = []

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     headers={"Authorization": f"Bearer {server.key}"}) as http:
            async def ask(model: str) -> int:
                return (await http.post("/v1/chat/completions", json={"model": model, "max_tokens": 2, "messages": [
                    {"role": "user", "content": "hi"}]})).status_code

            async def watch() -> None:
                while True:
                    models = (await http.get("/v1/models")).json()["data"]
                    seen.append([m["id"] for m in models if m["state"] != "unloaded"])
                    await asyncio.sleep(0.02)

            watching = asyncio.ensure_future(watch())
            try:
                return list(await asyncio.gather(ask("b"), ask("c")))
            finally:
                watching.cancel()

    assert asyncio.run(run()) == [200, 200]
    assert len(seen) >= 10 and all(len(loaded) <= 1 for loaded in seen), seen
    assert {tuple(loaded) for loaded in seen} >= {("b",), ("c",)}  # each had its turn
    assert sorted(m for m in "abc" if state(server, m) != "unloaded") in (["b"], ["c"])


def test_a_reload_that_changes_a_model_unloaded_on_demand_does_not_load_it(tmp_path):
    """Simulated llama.cpp: b is unloaded on demand (no room beside a). A reload changes b's queue;
    b stays unloaded — no engine started, a keeps its room — and its next request loads it as
    configured now."""
    config = one_at_a_time({"kind": "llamacpp", "simulate": True})
    server = Server(tmp_path, config).start()
    on_disk = yaml.safe_load(server.config_path.read_text())
    changed = [config["models"][0], {**config["models"][1], "queue": {"max_waiting": 7}}]
    server.config_path.write_text(yaml.safe_dump({**on_disk, "models": changed}))
    result = server.http.post("/admin/v1/config/reload")
    assert result.status_code == 200 and result.json()["changed"] == ["b"] and not result.json()["failed"], result.text
    assert [state(server, m) for m in "ab"] == ["ready", "unloaded"]
    [b] = [r for r in server.http.get("/admin/v1/replicas").json()["data"] if r["model"] == "b"]
    assert b["on_demand"] is True and b["pid"] is None
    assert server.http.post("/v1/chat/completions", json={"model": "b", "max_tokens": 2, "messages": [
        {"role": "user", "content": "hi"}]}).status_code == 200
    assert [state(server, m) for m in "ab"] == ["unloaded", "ready"]


def stream(server: Server, model: str) -> tuple[str, float]:
    """A whole streamed answer, and when it ended (monotonic)."""
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {server.key}"}) as http:
        text = http.post("/v1/chat/completions", json={"model": model, "stream": True, "messages": [
            {"role": "user", "content": "go on"}]}).text
    return text, time.monotonic()


def test_a_busy_model_is_not_unloaded_for_another_whose_request_waits_for_it(tmp_path):
    """Simulated llama.cpp (it stands in for the engine and sets the pace): a 3 s stream on a;
    a request for b meanwhile waits until the stream has ended, then makes room and is answered."""
    server = Server(tmp_path, one_at_a_time({"kind": "llamacpp", "simulate": True}))
    server.env = {"SEEKSTACK_SIM_OPTIONS": "--itl-ms 30 --output-len 100"}
    server.start()

    async def both() -> tuple[tuple[str, float], float, int, list[str]]:
        streaming = asyncio.ensure_future(asyncio.to_thread(stream, server, "a"))
        await asyncio.sleep(0.5)
        assert state(server, "a") == "ready" and not streaming.done()
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     headers={"Authorization": f"Bearer {server.key}"}) as http:
            answer = await http.post("/v1/chat/completions", json={"model": "b", "max_tokens": 4, "messages": [
                {"role": "user", "content": "hi"}]})
        return await streaming, time.monotonic(), answer.status_code, [state(server, m) for m in "ab"]

    (text, stream_ended), answered, status, states = asyncio.run(both())
    assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text, text[-500:]  # whole: a stayed loaded
    assert status == 200 and answered > stream_ended  # b was answered only after a's stream ended
    assert states == ["unloaded", "ready"]


def test_no_room_within_the_startup_timeout_is_503_to_a_request_and_409_to_an_operator(tmp_path):
    """Simulated llama.cpp: a's 6 s stream holds the memory past b's 2 s startup timeout."""
    server = Server(tmp_path, {**one_at_a_time({"kind": "llamacpp", "simulate": True}),
                               "supervisor": {"memory_budget_gb": 0.3, "startup_timeout": 2}})
    server.env = {"SEEKSTACK_SIM_OPTIONS": "--itl-ms 60 --output-len 100"}
    server.start()
    body = {"model": "b", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}

    async def during_a_stream():
        streaming = asyncio.ensure_future(asyncio.to_thread(stream, server, "a"))
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     headers={"Authorization": f"Bearer {server.key}"}) as http:
            operator = await http.post("/admin/v1/models/b/load")
            refused = await http.post("/v1/chat/completions", json=body)
        return operator, refused, streaming.done(), await streaming

    operator, refused, stream_was_done, (text, _) = asyncio.run(during_a_stream())
    assert not stream_was_done  # both answers came while a was busy
    assert operator.status_code == 409 and "while the models holding it stay busy: a" in operator.json()["error"]["message"]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "10", refused.text
    assert "does not fit the memory plan beside the models loaded now" in refused.json()["error"]["message"]
    assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text  # a's stream was not cut
    assert state(server, "b") == "unloaded"  # still loads on demand: once a is idle, b's request is answered
    assert server.http.post("/v1/chat/completions", json=body).status_code == 200
    assert [state(server, m) for m in "ab"] == ["unloaded", "ready"]
