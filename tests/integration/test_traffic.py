"""Traffic management against real engines' stand-ins: `seekstack sim` processes (vLLM's dialect;
the simulator stands in for vLLM, which needs a GPU) behind a real `seekstack serve`, killed,
hung and failed under load. Failover the client does not see, ejection, the bounded queue,
prefix affinity. (tests/integration/test_supervision.py kills real llama.cpp replicas.)"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import orjson
import pytest

from conftest import Server, start_sim
from test_supervision import wait_until

QUESTION = [{"role": "user", "content": "Tell me a long story"}]


@pytest.fixture
def sims(tmp_path):
    """Start `seekstack sim` engines (vLLM dialect, model `m`), each with its own faults file."""
    started = []

    def start(count: int, *args: str) -> list[dict]:
        for _ in range(count):
            faults = tmp_path / f"faults-{len(started)}.json"
            proc, port = start_sim("--dialect", "vllm", "--model", "m", "--max-num-seqs", "64",
                                   "--faults-file", str(faults), *args)
            started.append({"proc": proc, "port": port, "faults": faults, "url": f"http://127.0.0.1:{port}"})
        return started

    yield start
    for sim in started:
        if sim["proc"].poll() is None:
            sim["proc"].kill()
        sim["proc"].wait()


def gateway(tmp_path, engines: list[dict], scheduler: dict | None = None, **model) -> Server:
    config = {"scheduler": scheduler or {},
              "models": [{"name": "m", "context": 4096, "slots": 64,
                          "engine": {"kind": "vllm", "endpoints": [e["url"] for e in engines]}, **model}]}
    server = Server(tmp_path, config, name="traffic").start()
    # the gateway is ready once one endpoint of the model is; these tests start once every one is
    assert wait_until(lambda: all(r["state"] == "ready" for r in server.replicas()), 20), server.replicas()
    return server


def fault(engine: dict, **faults) -> None:
    engine["faults"].write_text(json.dumps({"*": faults}))


def status(server: Server) -> list[str]:
    return [r["state"] for r in sorted(server.replicas(), key=lambda r: r["replica"])]


def client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {server.key}"})


async def stream(http: httpx.AsyncClient, **extra) -> dict:
    """One streamed chat: its text, finish reason, chunk ids, usage, and whether [DONE] came."""
    body = {"model": "m", "messages": QUESTION, "stream": True, "stream_options": {"include_usage": True}, **extra}
    out = {"text": "", "finish": None, "ids": set(), "usage": None, "done": False, "errors": [], "roles": 0}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                out["done"] = True
            elif line.startswith("data: "):
                chunk = orjson.loads(line[6:])
                if "error" in chunk:
                    out["errors"].append(chunk["error"])
                    continue
                out["ids"].add(chunk["id"])
                out["usage"] = chunk.get("usage") or out["usage"]
                for choice in chunk["choices"]:
                    out["text"] += choice["delta"].get("content") or ""
                    out["roles"] += "role" in choice["delta"]
                    out["finish"] = choice.get("finish_reason") or out["finish"]
    return out


def test_16_streams_whose_engine_is_killed_all_complete_with_their_whole_text_and_usage_counted_once(tmp_path, sims):
    a, b = sims(2, "--itl-ms", "25", "--output-len", "60")
    server = gateway(tmp_path, [a, b])
    expected = asyncio.run(_one_stream(server))  # what a stream says when nothing happens to it
    assert expected["done"] and expected["usage"]["completion_tokens"] == 60
    fault(b, refuse=True)  # every stream goes to a: b refuses until the streams are under way
    assert wait_until(lambda: status(server) == ["ready", "ejected"], 10), status(server)
    usage_before = _usage(server)

    async def main():
        async with client(server) as http:
            streams = [asyncio.ensure_future(stream(http)) for _ in range(16)]
            await asyncio.sleep(0.5)  # all 16 streaming from a (60 tokens x 25 ms each)
            fault(b)  # b comes back: its breaker lets it in after a passing health check
            await asyncio.to_thread(wait_until, lambda: status(server)[1] in ("probing", "ready"), 10)
            a["proc"].send_signal(signal.SIGKILL)
            return await asyncio.gather(*streams)

    answers = asyncio.run(main())
    for answer in answers:
        assert answer["errors"] == [] and answer["done"], answer
        assert answer["text"] == expected["text"]            # nothing repeated, nothing lost
        assert answer["finish"] == expected["finish"] and answer["roles"] == 1
        assert len(answer["ids"]) == 1                       # one stream, one id
        assert answer["usage"] == expected["usage"]          # counted once: as if nothing had happened
    assert status(server)[0] == "ejected"
    # the gateway's own books count every stream once, too
    after = _usage(server)
    assert after["requests"] - usage_before["requests"] == 16
    assert after["completion_tokens"] - usage_before["completion_tokens"] == 16 * 60
    assert after["prompt_tokens"] - usage_before["prompt_tokens"] == 16 * expected["usage"]["prompt_tokens"]


async def _one_stream(server: Server) -> dict:
    async with client(server) as http:
        return await stream(http)


def _usage(server: Server) -> dict:
    rows = [row for row in server.http.get("/admin/v1/usage").json()["data"] if row.get("model") == "m"]
    return {k: sum(int(row.get(k) or 0) for row in rows) for k in ("requests", "prompt_tokens", "completion_tokens")}


def test_kill_9_an_engine_under_32_concurrent_requests_and_none_fails(tmp_path, sims):
    a, b = sims(2, "--itl-ms", "20", "--output-len", "30")
    server = gateway(tmp_path, [a, b])

    async def main():
        async with client(server) as http:
            async def one():
                return await http.post("/v1/chat/completions", json={"model": "m", "messages": QUESTION})
            requests = [asyncio.ensure_future(one()) for _ in range(32)]
            await asyncio.sleep(0.3)  # half of them on a, 300 ms into their 600
            a["proc"].send_signal(signal.SIGKILL)
            return await asyncio.gather(*requests)

    replies = asyncio.run(main())
    assert [r.status_code for r in replies] == [200] * 32, [r.text for r in replies if r.status_code != 200]
    texts = {r.json()["choices"][0]["message"]["content"] for r in replies}
    assert len(texts) == 1 and len(next(iter(texts)).split()) == 30  # every one whole, none cut short
    assert status(server)[0] == "ejected"
    reason = server.replicas()[0]["breaker"]["reason"]
    assert "connection" in reason.lower(), reason  # a request's broken connection, or a health check's
    metrics = server.http.get("/metrics").text
    assert 'seekstack_endpoint_ejections_total{endpoint="m/0",model="m"} 1.0' in metrics, metrics


def test_a_hung_engine_is_ejected_and_its_requests_go_on_elsewhere(tmp_path, sims):
    a, b = sims(2, "--itl-ms", "25", "--output-len", "60")
    server = gateway(tmp_path, [a, b])
    expected = asyncio.run(_one_stream(server))
    fault(b, refuse=True)
    assert wait_until(lambda: status(server) == ["ready", "ejected"], 10)

    async def main():
        async with client(server) as http:
            streams = [asyncio.ensure_future(stream(http)) for _ in range(4)]
            whole = [asyncio.ensure_future(http.post("/v1/chat/completions", json={"model": "m", "messages": QUESTION}))
                     for _ in range(4)]  # non-streamed: waiting for their answer's head (60 x 25 ms)
            await asyncio.sleep(0.5)
            fault(b)
            await asyncio.to_thread(wait_until, lambda: status(server)[1] in ("probing", "ready"), 10)
            before = httpx.get(b["url"] + "/sim/info").json()["requests_total"]
            fault(a, hang=True)  # a accepts and reads, and never answers again (health checks too)
            hung_at = time.monotonic()
            await asyncio.to_thread(wait_until, lambda: status(server)[0] == "ejected", 10, 0.02)
            ejected_after = time.monotonic() - hung_at
            # new requests go to b at once
            news = await asyncio.gather(*(http.post("/v1/chat/completions", json={"model": "m", "messages": QUESTION,
                                                                                 "max_tokens": 3}) for _ in range(8)))
            answers, replies = await asyncio.gather(*streams), await asyncio.gather(*whole)
            return answers, replies, news, ejected_after, httpx.get(b["url"] + "/sim/info").json()["requests_total"] - before

    answers, replies, news, ejected_after, on_b = asyncio.run(main())
    assert [r.status_code for r in news] == [200] * 8
    for answer in answers:  # the streams in flight on a were broken off and went on on b
        assert answer["errors"] == [] and answer["done"] and answer["text"] == expected["text"], answer
    # the non-streamed ones still waiting on a were broken off too, and answered whole by b
    assert [r.status_code for r in replies] == [200] * 4
    assert {r.json()["choices"][0]["message"]["content"] for r in replies} == {expected["text"]}
    assert on_b == 4 + 4 + 8, on_b  # the resumed streams, the rescued requests, the new ones
    reason = server.replicas()[0]["breaker"]["reason"]
    assert "no answer from /health" in reason, reason
    print(f"hung engine ejected after {ejected_after:.2f} s")  # bench/failover.py measures this


def test_a_failing_engine_is_ejected_and_its_requests_answered_by_another(tmp_path, sims):
    a, b = sims(2)
    server = gateway(tmp_path, [a, b], scheduler={"policy": "round-robin"})
    fault(a, http500=True)
    time.sleep(0.2)
    replies = [server.http.post("/v1/chat/completions", json={"model": "m", "messages": QUESTION, "max_tokens": 3})
               for _ in range(10)]
    assert [r.status_code for r in replies] == [200] * 10
    replica = server.replicas()[0]
    assert replica["state"] == "ejected" and "HTTP 500" in replica["breaker"]["reason"], replica
    # a request that fails on every endpoint is the request's fault, not theirs: only the first is ejected
    fault(a)
    assert wait_until(lambda: status(server)[0] in ("probing", "ready"), 10), status(server)
    fault(b, http500=True)
    fault(a, http500=True)
    time.sleep(0.2)
    failed = server.http.post("/v1/chat/completions", json={"model": "m", "messages": QUESTION, "max_tokens": 3})
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "engine_error", failed.text
    assert sorted(status(server))[0] == "ejected" and sorted(status(server))[1] in ("probing", "ready"), status(server)


def test_past_the_queue_bound_a_request_gets_429_with_retry_after_at_once(tmp_path, sims):
    (a,) = sims(1, "--itl-ms", "50", "--output-len", "40")
    server = gateway(tmp_path, [a], queue={"concurrency": 2, "max_waiting": 2, "max_wait": 30})

    async def main():
        async with client(server) as http:
            running = [asyncio.ensure_future(stream(http)) for _ in range(4)]  # 2 run, 2 wait
            await asyncio.sleep(0.3)
            refused = await http.post("/v1/chat/completions", json={"model": "m", "messages": QUESTION})
            still_running = sum(not t.done() for t in running)
            return refused, still_running, await asyncio.gather(*running)

    refused, still_running, answers = asyncio.run(main())
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "model_overloaded" and int(refused.headers["retry-after"]) >= 1
    assert still_running == 4  # refused while the others were still in flight, not after them
    assert all(a["done"] and not a["errors"] for a in answers)  # the waiting ones ran when a slot came free
    metrics = server.http.get("/metrics").text
    assert 'seekstack_queue_rejected_total{model="m",reason="full"} 1.0' in metrics


def test_prefix_affinity_sends_repeated_prefixes_to_one_engine(tmp_path, sims):
    engines = sims(2)
    server = gateway(tmp_path, engines, scheduler={"policy": "prefix-affinity", "prefix_bytes": 128})
    system = {"role": "system", "content": "You answer questions about the bank's loan products. " * 3}
    for i in range(12):
        reply = server.http.post("/v1/chat/completions", json={
            "model": "m", "messages": [system, {"role": "user", "content": f"question {i}"}], "max_tokens": 2})
        assert reply.status_code == 200
    served = [httpx.get(e["url"] + "/sim/info").json()["requests_total"] for e in engines]
    assert sorted(served) == [0, 12], served


def test_streams_on_a_killed_llama_cpp_replica_go_on_on_the_other(tmp_path):
    """Real llama.cpp (its assistant prefill continues the text so far): streams whose replica is
    killed end whole — every token asked for, counted once, one stream."""
    server = Server(tmp_path, {"scheduler": {"policy": "round-robin"}, "models": [
        {"name": "pair", "source": "embedded", "replicas": 2, "context": 512, "slots": 4, "threads": 1}]},
        name="llama").start()
    assert wait_until(lambda: [r["state"] for r in server.replicas()] == ["ready", "ready"], 60)
    body = {"model": "pair", "max_tokens": 240, "temperature": 0, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Count from one to fifty in words."}]}

    async def main():
        async with client(server) as http:
            async def one():
                out = {"text": "", "ids": set(), "usage": None, "done": False, "errors": [], "roles": 0}
                async with http.stream("POST", "/v1/chat/completions", json={
                        **body, "stream": True, "stream_options": {"include_usage": True}}) as r:
                    async for line in r.aiter_lines():
                        if line == "data: [DONE]":
                            out["done"] = True
                        elif line.startswith("data: "):
                            chunk = orjson.loads(line[6:])
                            if "error" in chunk:
                                out["errors"].append(chunk["error"])
                                continue
                            out["ids"].add(chunk["id"])
                            out["usage"] = chunk.get("usage") or out["usage"]
                            for choice in chunk["choices"]:
                                out["text"] += choice["delta"].get("content") or ""
                                out["roles"] += "role" in choice["delta"]
                return out
            streams = [asyncio.ensure_future(one()) for _ in range(4)]  # two on each replica
            busy = await asyncio.to_thread(wait_until, lambda: all(r["outstanding"] for r in server.replicas()), 20, 0.01)
            await asyncio.sleep(0.2)
            victim = server.replicas()[0]
            os.kill(victim["pid"], signal.SIGKILL)
            return busy, await asyncio.gather(*streams)

    busy, answers = asyncio.run(main())
    assert busy
    for answer in answers:
        assert answer["errors"] == [] and answer["done"], answer
        assert answer["usage"]["completion_tokens"] == 240, answer["usage"]  # every token asked for, once
        assert len(answer["ids"]) == 1 and answer["roles"] <= 1 and answer["text"]  # no second role chunk
    # the victim's two streams: resumed, or (one that had no token yet) sent again before its first byte
    resumed = [line for line in server.http.get("/metrics").text.splitlines()
               if line.startswith('seekstack_streams_resumed_total{model="pair"}')]
    assert resumed and float(resumed[0].rsplit(" ", 1)[1]) >= 1, resumed
