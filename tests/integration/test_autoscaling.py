"""The autoscaler on a real `seekstack serve`: simulated llama.cpp replicas (the simulator parses
llama.cpp's launch and stands in for it, so replicas start in a fraction of a second) under a
load ramp, with the windows shortened by settings. Replicas are added up to what the memory plan
allows (below max_replicas), then removed, draining, when the load goes; every decision is an
audit record, a metric and visible in the admin API, which only `scale:*` roles may use."""

from __future__ import annotations

import asyncio

import httpx

from conftest import Server, as_key, auditor_key, make_key, make_user, streams_resumed
from test_supervision import wait_until

RULE = {"min_replicas": 1, "max_replicas": 3, "window": 1.0, "sample_every": 0.1, "up_cooldown": 0.5,
        "down_cooldown": 1.0}


def per_replica_gb(slots: int = 4) -> float:
    """The memory plan of one replica of the models below (what admission and the autoscaler count)."""
    from seekstack.config import ModelConfig
    from seekstack.planner.admission import _spec
    from seekstack.planner.hardware import detect, parse_hardware
    from seekstack.planner.plan import make_plan

    model = ModelConfig(name="m", source="embedded", context=512, slots=slots, prompt_cache_mib=0)
    plan = make_plan(_spec(model.resolved_path()), parse_hardware("auto", detect()), quant_name="file",
                     context=512, concurrency=slots, engine="llamacpp", prompt_cache_bytes=0)
    return plan.total_bytes / 1e9


def replicas(server: Server) -> list[dict]:
    return [r for r in server.replicas() if r["model"] == "m"]


def test_a_load_ramp_scales_up_to_what_fits_and_back_down_draining(tmp_path):
    server = Server(tmp_path, {
        "supervisor": {"memory_budget_gb": round(per_replica_gb() * 2.5, 6)},  # two fit, not three
        "models": [{"name": "m", "source": "embedded", "context": 512, "slots": 4, "prompt_cache_mib": 0,
                    "engine": {"kind": "llamacpp", "simulate": True}, "autoscale": RULE}]})
    server.env = {"SEEKSTACK_SIM_OPTIONS": "--itl-ms 10 --output-len 100"}
    server.start()
    assert len(replicas(server)) == 1
    stop = asyncio.Event()

    async def load():
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     headers={"Authorization": f"Bearer {server.key}"}) as http:
            async def stream_until_stopped():
                statuses = []
                while not stop.is_set():
                    r = await http.post("/v1/chat/completions", json={"model": "m", "messages": [
                        {"role": "user", "content": "go on"}], "stream": True})
                    whole = r.text.rstrip().endswith("data: [DONE]") and '"error"' not in r.text
                    statuses.append(r.status_code if whole else f"{r.status_code}, cut")
                return statuses
            workers = [asyncio.ensure_future(stream_until_stopped()) for _ in range(10)]  # 10 on 4 slots
            grew = await asyncio.to_thread(wait_until, lambda: len([r for r in replicas(server)
                                                                   if r["state"] == "ready"]) == 2, 20)
            await asyncio.sleep(2.5)  # saturated at two as well: a third is wanted, and the plan says no
            stop.set()
            return grew, [s for w in await asyncio.gather(*workers) for s in w]

    grew, statuses = asyncio.run(load())
    assert grew, replicas(server)
    assert set(statuses) == {200}  # nothing refused or cut while replicas came and went
    assert streams_resumed(server.http.get("/metrics").text) == 0  # nor broken off and resumed elsewhere
    state = server.http.get("/admin/v1/autoscaler").json()["data"][0]
    assert state["model"] == "m" and state["decisions"]["up"] == 1 and state["decisions"]["held"] >= 1, state
    assert state["rule"]["max_replicas"] == 3
    # the load is gone: back to one, the surplus replica drained and stopped
    assert wait_until(lambda: len(replicas(server)) == 1, 20), replicas(server)
    state = server.http.get("/admin/v1/autoscaler").json()["data"][0]
    assert state["decisions"]["down"] == 1 and state["replicas"] == 1
    metrics = server.http.get("/metrics").text
    assert 'seekstack_autoscaler_decisions_total{direction="up",model="m"} 1.0' in metrics
    assert 'seekstack_autoscaler_replicas{model="m"} 1.0' in metrics
    # every decision is in the audit log, the refused one with the memory plan's reason
    auditor = as_key(server, auditor_key(server))
    records = auditor.get("/admin/v1/audit", params={"event": "autoscale"}).json()["data"]
    directions = [r["direction"] for r in records]
    assert directions.count("up") == 1 and directions.count("down") == 1 and "held" in directions, records
    held = next(r for r in records if r["direction"] == "held")
    assert "memory_budget_gb" in held["reason"] and held["decision"] == "deny"


def test_scaling_by_hand_and_its_permissions(tmp_path):
    server = Server(tmp_path, {"supervisor": {"memory_budget_gb": round(per_replica_gb(2) * 2.5, 6)},  # two fit
                               "models": [{"name": "m", "source": "embedded", "context": 512, "slots": 2,
                                           "prompt_cache_mib": 0, "engine": {"kind": "llamacpp", "simulate": True},
                                           "autoscale": {**RULE, "window": 300, "sample_every": 5}}]}).start()
    scaled = server.http.post("/admin/v1/models/m/scale", json={"replicas": 2})
    assert scaled.status_code == 200, scaled.text
    assert wait_until(lambda: [r["state"] for r in replicas(server)] == ["ready", "ready"], 20)
    outside = server.http.post("/admin/v1/models/m/scale", json={"replicas": 5})
    assert outside.status_code == 400 and "between 1 and 3" in outside.json()["error"]["message"]
    bounds = server.http.put("/admin/v1/autoscaler/m", json={"min_replicas": 1, "max_replicas": 5})
    assert bounds.status_code == 200 and bounds.json()["rule"]["max_replicas"] == 5
    # within the bounds, but not within memory: refused with the plan's numbers, nothing started
    too_many = server.http.post("/admin/v1/models/m/scale", json={"replicas": 3})
    assert too_many.status_code == 400 and "memory_budget_gb" in too_many.json()["error"]["message"], too_many.text
    assert len(replicas(server)) == 2
    # a consumer may not see or change scaling; nor may the security admin (another duty)
    consumer = as_key(server, make_key(server, make_user(server, "api_consumer")))
    assert consumer.get("/admin/v1/autoscaler").status_code == 403
    assert consumer.post("/admin/v1/models/m/scale", json={"replicas": 1}).status_code == 403
    assert server.security.put("/admin/v1/autoscaler/m", json={"max_replicas": 2}).status_code == 403
    assert server.http.post("/admin/v1/models/m/scale", json={"replicas": 1}).status_code == 200
    assert wait_until(lambda: len(replicas(server)) == 1, 20)
