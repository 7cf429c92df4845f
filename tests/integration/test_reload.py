"""Hot reload of a running `seekstack serve`: models added, changed and removed while streams
are in flight; a bad config refused whole; SIGHUP. The engines are simulated llama.cpp
replicas (`engine.simulate`: the simulator parses llama.cpp's launch), so they start in a
fraction of a second and stream at a steady 25 ms per token."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import httpx
import orjson
import yaml

from conftest import SEEKSTACK, Server, streams_resumed
from test_supervision import wait_until

SIM = {"source": "embedded", "context": 512, "engine": {"kind": "llamacpp", "simulate": True}}


def model(name: str, **extra) -> dict:
    return {"name": name, **SIM, **extra}


def write(server: Server, models: list[dict]) -> None:
    config = yaml.safe_load(server.config_path.read_text())
    server.config_path.write_text(yaml.safe_dump({**config, "models": models}))


def reload(server: Server) -> subprocess.CompletedProcess:
    return subprocess.run([*SEEKSTACK, "config", "reload", "--config", str(server.config_path), "--url", server.url],
                          capture_output=True, text=True, timeout=120)


async def stream(client: httpx.AsyncClient, model_name: str) -> tuple[str, str | None, bool]:
    """(text, finish reason, whether [DONE] came) of one streamed chat."""
    body = {"model": model_name, "messages": [{"role": "user", "content": "go"}], "max_tokens": 200,
            "stream": True, "ignore_eos": True}
    text, finish, done = [], None, False
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                chunk = orjson.loads(line[6:])
                assert "error" not in chunk, chunk
                for choice in chunk["choices"]:
                    text.append(choice["delta"].get("content") or "")
                    finish = choice.get("finish_reason") or finish
    return "".join(text), finish, done


def states(server: Server) -> dict[str, str]:
    return {m["id"]: m["state"] for m in server.http.get("/v1/models").json()["data"]}


def test_reload_with_16_streams_in_flight_drops_none_and_serves_the_new_config(tmp_path):
    server = Server(tmp_path, {"models": [model("a", slots=16), model("c")]})
    server.env = {"SEEKSTACK_SIM_OPTIONS": "--itl-ms 25 --output-len 160"}
    server.start()
    old_pid = next(r["pid"] for r in server.replicas() if r["model"] == "a")
    expected = asyncio.run(_one(server, "a"))  # what a stream of "a" says when nothing happens to it

    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     headers={"Authorization": f"Bearer {server.key}"}) as client:
            streams = [asyncio.ensure_future(stream(client, "a")) for _ in range(16)]
            await asyncio.sleep(0.4)  # all 16 are streaming (160 tokens × 25 ms each)
            write(server, [model("a", slots=8), model("b")])  # a changed, b added, c removed
            result = await asyncio.to_thread(reload, server)
            still = sum(not s.done() for s in streams)  # the old replica is still draining these
            return result, still, await asyncio.gather(*streams)

    result, still, answers = asyncio.run(main())
    assert result.returncode == 0, result.stderr
    assert "added: b" in result.stdout and "changed: a" in result.stdout and "removed: c" in result.stdout, result.stdout
    assert still == 16
    assert answers == [expected] * 16 and len(expected[0].split()) == 160  # every stream complete, its text whole
    assert streams_resumed(server.http.get("/metrics").text) == 0  # none broke off and went on elsewhere
    assert states(server) == {"a": "ready", "b": "ready"}
    new = [r for r in server.replicas() if r["model"] == "a"]
    assert len(new) == 1 and new[0]["pid"] != old_pid
    assert wait_until(lambda: not _alive(old_pid), 10)  # the old replica drained, then stopped
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert server.http.post("/v1/chat/completions", json={**body, "model": "b"}).status_code == 200
    assert server.http.post("/v1/chat/completions", json={**body, "model": "c"}).status_code == 404


def test_a_bad_config_is_refused_whole_and_the_running_one_stays(tmp_path):
    server = Server(tmp_path, {"models": [model("a")]}).start()
    write(server, [model("a", slots=2), {"name": "b", "path": str(tmp_path / "missing.gguf")},
                   {"name": "c", "engine": {"kind": "nosuch"}}])
    result = reload(server)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "refused whole (2 problem(s))" in result.stderr, result.stderr
    assert "missing.gguf" in result.stderr and "nosuch" in result.stderr
    refused = server.http.post("/admin/v1/config/reload")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_config"
    assert states(server) == {"a": "ready"}
    # only a config:manage caller may reload
    security = server.security.post("/admin/v1/config/reload")
    assert security.status_code == 403


def test_sighup_applies_the_config_file(tmp_path):
    server = Server(tmp_path, {"models": [model("a")]}).start()
    write(server, [model("a"), model("d")])
    os.kill(server.proc.pid, signal.SIGHUP)
    assert wait_until(lambda: states(server).get("d") == "ready", 30), states(server)
    assert server.http.post("/v1/chat/completions", json={
        "model": "d", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).status_code == 200


async def _one(server: Server, name: str):
    async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                 headers={"Authorization": f"Bearer {server.key}"}) as client:
        return await stream(client, name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_model_that_does_not_fit_the_memory_plan_is_refused_whole_and_one_that_takes_turns_is_added(tmp_path):
    """Against the budget planned at start (0.3 GB; each model here takes ~0.245 GB): a second
    model always loaded would not fit, so the reload is refused with the numbers; the same model
    with a keep_alive takes turns with a, so it is added (unloaded, loaded on its request)."""
    sized = {"slots": 1, "prompt_cache_mib": 0}
    server = Server(tmp_path, {"supervisor": {"memory_budget_gb": 0.3},
                               "models": [model("a", keep_alive=3600, **sized)]}).start()
    write(server, [model("a", keep_alive=3600, **sized), model("c", **sized)])
    refused = server.http.post("/admin/v1/config/reload")
    message = refused.json()["error"]["message"]
    assert refused.status_code == 400 and "refused whole (1 problem(s))" in message, message
    assert "memory: the models need 0.46 GiB" in message and "supervisor.memory_budget_gb" in message
    assert "fix: " in message
    assert states(server) == {"a": "ready"}
    write(server, [model("a", keep_alive=3600, **sized), model("c", keep_alive=3600, **sized)])
    applied = server.http.post("/admin/v1/config/reload")
    assert applied.status_code == 200 and applied.json()["added"] == ["c"], applied.text
    assert states(server) == {"a": "ready", "c": "unloaded"}


def test_a_reload_plans_the_unchanged_models_with_the_sizes_they_run_with(tmp_path):
    """a's context and slots are unset, so serve derived them to fit 0.35 GB (1024 × 4). A reload
    that only adds an engine elsewhere plans a as it runs, not at the 4096 × 4 of its bare entry
    (0.80 GiB), and is applied."""
    bare = {"name": "a", "source": "embedded", "engine": {"kind": "llamacpp", "simulate": True}}
    server = Server(tmp_path, {"supervisor": {"memory_budget_gb": 0.35}, "models": [bare]}).start()
    write(server, [bare, {"name": "far", "engine": {"kind": "openai", "url": "http://127.0.0.1:9/v1"}}])
    applied = server.http.post("/admin/v1/config/reload")
    assert applied.status_code == 200 and applied.json()["added"] == ["far"], applied.text
    assert states(server)["a"] == "ready"
