"""Canary and blue-green rollouts on a real `seekstack serve`, between two versions of a model in
the store. The engines are simulated llama.cpp replicas (the simulator parses llama.cpp's launch
and stands in for it; `fail_rate` in its faults file, keyed by the store version, makes one
version fail a share of its requests)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess

import httpx
import pytest

from conftest import SEEKSTACK, Server, as_key, auditor_key, make_key, make_user, streams_resumed
from test_supervision import wait_until

from seekstack.embedded import embedded_model_path
from seekstack.store import Store
from seekstack.store.transfer import import_path


LONG = 1200  # tokens of a long stream: 6 s at the simulated 5 ms a token (requests asking fewer get fewer)
WATCHER = {"permissions": ["models:read", "rollout:read"], "scope": "global", "description": "watches rollouts"}


@pytest.fixture
def served(tmp_path):
    """`m` served from store model `tiny` version 1; version 2 is in the store beside it."""
    store = Store(tmp_path / "store")
    import_path(store, embedded_model_path(), "tiny")
    newer = tmp_path / "newer.gguf"
    newer.write_bytes(embedded_model_path().read_bytes() + b"\0" * 64)  # another build: another version
    import_path(store, newer, "tiny")
    faults = tmp_path / "faults.json"
    faults.write_text("{}")
    server = Server(tmp_path, {"store": {"path": str(tmp_path / "store")}, "roles": {"rollout_watcher": WATCHER},
                               "models": [{"name": "m", "store": "tiny@1", "context": 2048, "slots": 8,
                                           "engine": {"kind": "llamacpp", "simulate": True}}]})
    server.env = {"SEEKSTACK_SIM_OPTIONS": f"--itl-ms 5 --output-len {LONG} --faults-file {faults}"}
    server.faults = faults
    server.start()
    return server


def rollout(server: Server) -> dict:
    return server.http.get("/admin/v1/rollouts").json()["data"][0]


async def traffic(server: Server, count: int, concurrency: int = 8, stream_every: int = 3) -> list[tuple[int, bool]]:
    """``count`` chats from distinct end users (OpenAI's `user`), some streamed: (status, whole)."""
    users = [f"user-{i}" for i in range(count)]
    random.Random(1).shuffle(users)
    results = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                 headers={"Authorization": f"Bearer {server.key}"}) as http:
        async def one(i: int, user: str):
            body = {"model": "m", "user": user, "max_tokens": 4, "messages": [{"role": "user", "content": f"hello {i}"}]}
            if i % stream_every == 0:
                async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                    text = (await r.aread()).decode()
                    results.append((r.status_code, text.rstrip().endswith("data: [DONE]") and '"error"' not in text))
            else:
                r = await http.post("/v1/chat/completions", json=body)
                results.append((r.status_code, r.status_code == 200 and bool(r.json()["choices"][0]["message"]["content"])))

        queue = list(enumerate(users))

        async def worker():
            while queue:
                await one(*queue.pop())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def test_a_canary_that_fails_5_percent_is_rolled_back_and_no_client_sees_its_failures(served):
    served.faults.write_text(json.dumps({"tiny@2": {"fail_rate": 0.05}}))
    started = served.http.post("/admin/v1/rollouts", json={"model": "m", "to": "2", "canary_percent": 40,
                                                           "duration_s": 600, "min_requests": 20})
    assert started.status_code == 201, started.text
    assert started.json()["to"] == "tiny@2" and started.json()["state"] == "running"
    assert wait_until(lambda: len(served.replicas()) == 2 and all(r["state"] == "ready" for r in served.replicas()), 20)
    results = asyncio.run(traffic(served, 300))
    assert all(status == 200 and whole for status, whole in results), [r for r in results if r != (200, True)]
    assert wait_until(lambda: rollout(served)["state"] == "rolled-back", 60), rollout(served)
    ended = rollout(served)
    assert "error rate" in ended["reason"] and ended["canary"]["errors"] >= 1 and ended["baseline"]["errors"] == 0
    # the canary left and drained; the model is version 1 alone again
    assert [(d["name"], d["version"]) for d in served.http.get("/admin/v1/deployments").json()["data"]] == [("m", "1")]
    assert wait_until(lambda: len(served.replicas()) == 1, 20)
    metrics = served.http.get("/metrics").text
    assert 'seekstack_rollouts_total{model="m",outcome="rolled-back"} 1.0' in metrics
    auditor = as_key(served, auditor_key(served))
    steps = [r["step"] for r in auditor.get("/admin/v1/audit", params={"event": "rollout"}).json()["data"]]
    assert steps == ["started", "rolled-back"]


def test_a_healthy_canary_takes_its_share_sticky_per_user_and_is_promoted(served):
    started = served.http.post("/admin/v1/rollouts", json={"model": "m", "to": "tiny@2", "canary_percent": 50,
                                                           "duration_s": 4})
    assert started.status_code == 201, started.text
    assert wait_until(lambda: len(served.replicas()) == 2 and all(r["state"] == "ready" for r in served.replicas()), 20)
    share = {line.split("deployment=")[1].split(",")[0]: float(line.rsplit(" ", 1)[1])
             for line in served.http.get("/metrics").text.splitlines()
             if line.startswith("seekstack_deployment_traffic_share{")}
    assert share == {'"m"': 0.5, '"m@2"': 0.5}, share
    results = asyncio.run(traffic(served, 60))
    assert all(status == 200 and whole for status, whole in results)
    assert wait_until(lambda: rollout(served)["state"] == "promoted", 30), rollout(served)
    assert rollout(served)["canary"]["requests"] > 10  # it took its share of the traffic
    assert [(d["name"], d["version"]) for d in served.http.get("/admin/v1/deployments").json()["data"]] == [("m", "2")]
    assert wait_until(lambda: len(served.replicas()) == 1, 20)
    assert served.http.post("/v1/chat/completions", json={"model": "m", "max_tokens": 2, "messages": [
        {"role": "user", "content": "hi"}]}).status_code == 200


async def long_stream(server: Server) -> tuple[int, bool]:
    """A stream of LONG tokens (6 s): (its content pieces, whether [DONE] came)."""
    body = {"model": "m", "max_tokens": LONG, "stream": True, "messages": [{"role": "user", "content": "go on"}]}
    pieces, done = 0, False
    async with httpx.AsyncClient(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {server.key}"}) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: ") and '"content"' in line:
                    pieces += sum(1 for c in json.loads(line[6:])["choices"] if c["delta"].get("content"))
    return pieces, done


def test_blue_green_under_load_drops_nothing(served):
    async def main():
        load = asyncio.ensure_future(traffic(served, 400, concurrency=8, stream_every=2))
        long = [asyncio.ensure_future(long_stream(served)) for _ in range(4)]  # on blue until after the switch
        await asyncio.sleep(0.3)
        switched = await asyncio.to_thread(subprocess.run, [
            *SEEKSTACK, "rollout", "switch", "m", "--to", "2", "--url", served.url, "--api-key", served.key],
            capture_output=True, text=True, timeout=60)
        promoted = await asyncio.to_thread(wait_until, lambda: rollout(served)["state"] == "promoted", 30)
        still = sum(not stream.done() for stream in long)
        return switched, promoted, await load, still, await asyncio.gather(*long)

    switched, promoted, results, still, longs = asyncio.run(main())
    assert switched.returncode == 0 and "blue-green of m to tiny@2" in switched.stdout, switched.stdout + switched.stderr
    assert promoted, rollout(served)
    assert len(results) == 400 and all(status == 200 and whole for status, whole in results), \
        [r for r in results if r != (200, True)]
    assert still == 4  # in flight on blue when green took over ...
    assert longs == [(LONG, True)] * 4  # ... and each finished there, whole
    assert streams_resumed(served.http.get("/metrics").text) == 0  # not one broke off and went on on green
    assert [(d["name"], d["version"]) for d in served.http.get("/admin/v1/deployments").json()["data"]] == [("m", "2")]
    assert wait_until(lambda: len(served.replicas()) == 1, 20)


def test_rollout_permissions_and_bad_requests(served):
    consumer = as_key(served, make_key(served, make_user(served, "api_consumer")))
    assert consumer.get("/admin/v1/rollouts").status_code == 403
    assert consumer.post("/admin/v1/rollouts", json={"model": "m", "to": "2"}).status_code == 403
    assert served.security.post("/admin/v1/rollouts", json={"model": "m", "to": "2"}).status_code == 403  # another duty
    missing = served.http.post("/admin/v1/rollouts", json={"model": "m", "to": "9"})
    assert missing.status_code == 400 and "tiny@9" in missing.json()["error"]["message"], missing.text
    other = served.http.post("/admin/v1/rollouts", json={"model": "m", "to": "other@1"})
    assert other.status_code == 400 and "not a version of tiny" in other.json()["error"]["message"]
    assert served.http.post("/admin/v1/rollouts/m/abort").status_code == 404
    first = served.http.post("/admin/v1/rollouts", json={"model": "m", "to": "2", "duration_s": 600})
    assert first.status_code == 201
    again = served.http.post("/admin/v1/rollouts", json={"model": "m", "to": "2"})
    assert again.status_code == 409
    aborted = served.http.post("/admin/v1/rollouts/m/abort")
    assert aborted.status_code == 200 and aborted.json()["state"] == "aborted"
    assert [d["name"] for d in served.http.get("/admin/v1/deployments").json()["data"]] == ["m"]


def test_the_console_shows_a_rollout_and_aborts_and_promotes_it(served, browser):
    """In a real browser: the models page shows the canary; Abort and Promote act on it (each asks
    first); a role that may read rollouts but not manage them sees no buttons."""
    def open_models(key: str):
        page = browser.new_context().new_page()
        page.on("dialog", lambda d: d.accept())
        page.goto(served.url + "/console/signin?next=/console/models")
        page.fill("#key", key)
        page.click("#signin button[type=submit]")
        page.wait_for_url(served.url + "/console/models")
        return page

    assert served.http.post("/admin/v1/rollouts", json={"model": "m", "to": "2", "canary_percent": 10,
                                                        "duration_s": 600}).status_code == 201
    page = open_models(served.key)
    row = page.locator("#rollouts-h ~ table tbody tr").first
    assert "tiny@2" in row.inner_text() and "canary" in row.inner_text()
    row.locator("button.danger").click()
    page.wait_for_selector("#rollouts-h ~ table .state.aborted")
    assert rollout(served)["state"] == "aborted"
    assert [d["name"] for d in served.http.get("/admin/v1/deployments").json()["data"]] == ["m"]

    assert served.http.post("/admin/v1/rollouts", json={"model": "m", "to": "2", "canary_percent": 10,
                                                        "duration_s": 600}).status_code == 201
    watcher = open_models(auditor_key(served, "rollout_watcher"))  # rollout:read, not rollout:manage
    assert watcher.locator("#rollouts-h ~ table .state.starting, #rollouts-h ~ table .state.running").count() == 1
    assert watcher.locator("#rollouts-h ~ table button").count() == 0
    assert watcher.locator("main table").count() == 1  # no replica table: that takes models:manage
    watcher.context.close()
    analyst = open_models(make_key(served, make_user(served, "data_analyst")))  # models:read only
    assert analyst.locator("#rollouts-h").count() == 0 and "m" in analyst.locator("main h2").first.inner_text()
    analyst.context.close()
    page.reload()
    page.locator("#rollouts-h ~ table tbody tr").first.locator("button:not(.danger)").click()
    page.wait_for_selector("#rollouts-h ~ table .state.promoted")
    assert rollout(served)["state"] == "promoted"
    page.context.close()
