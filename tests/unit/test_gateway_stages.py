"""Gateway stages in-process, against the engine simulator in each dialect (tests/inprocess.py):
guard, inference checks, the Backend's dialect, shaping, reasoning and PII in streams.

The simulator echoes the last user message, so what the engine was sent shows in the answer."""

from __future__ import annotations

import asyncio
import json

import pytest

from inprocess import gateway, run

DIALECTS = ["vllm", "sglang", "llamacpp", "openai"]
PHONE = "13812345678"


def chat_body(content: str, stream: bool = False, **extra) -> dict:
    return {"model": "deepseek-r1", "messages": [{"role": "user", "content": content}], "stream": stream, **extra}


async def answer(client, content: str, stream: bool, **extra) -> tuple[str, str, dict]:
    """(content, reasoning_content, usage) of a chat answer, streamed or not."""
    body = chat_body(content, stream, **({"stream_options": {"include_usage": True}} if stream else {}), **extra)
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    if not stream:
        message = r.json()["choices"][0]["message"]
        return message["content"], message.get("reasoning_content") or "", r.json()["usage"]
    text, reasoning, usage = [], [], []
    for line in r.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            if chunk.get("usage"):
                usage.append(chunk["usage"])
            for choice in chunk["choices"]:
                text.append(choice["delta"].get("content") or "")
                reasoning.append(choice["delta"].get("reasoning_content") or "")
    assert len(usage) == 1
    return "".join(text), "".join(reasoning), usage[0]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_reasoning_is_split_the_same_streamed_or_not_in_every_dialect(tmp_path, dialect):
    async def main():
        async with gateway(tmp_path, dialect=dialect) as gw:
            return [await answer(gw.client, "alpha beta gamma", stream) for stream in (False, True)]

    (text, reasoning, usage), (s_text, s_reasoning, s_usage) = run(main())
    assert (text, reasoning) == (s_text, s_reasoning)
    assert text == "Echo: alpha beta gamma"
    assert reasoning.strip() == "Thinking about alpha beta gamma."
    assert usage["completion_tokens"] == s_usage["completion_tokens"] and usage["completion_tokens_details"]["reasoning_tokens"] == 6


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("stream", [False, True])
def test_mask_reaches_the_engine_and_tokenize_is_restored_in_the_answer(tmp_path, dialect, stream):
    async def main(policy):
        async with gateway(tmp_path / policy, dialect=dialect, config={"pii": {"default": policy}}) as gw:
            return (await answer(gw.client, f"call {PHONE} now", stream))[0]

    (tmp_path / "mask").mkdir()
    (tmp_path / "tokenize").mkdir()
    assert run(main("mask")) == "Echo: call [CN_MOBILE] now"  # the engine only ever saw the label
    assert run(main("tokenize")) == f"Echo: call {PHONE} now"  # it saw [CN_MOBILE_1]; the client gets the number back


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_prompt_too_long_is_400_whether_the_gateway_or_the_engine_counts_it(tmp_path, dialect):
    async def main():
        async with gateway(tmp_path, dialect=dialect, context=256) as gw:
            r = await gw.client.post("/v1/chat/completions", json=chat_body(" ".join(["w"] * 300)))
            return r.status_code, r.json()["error"], gw.sim.requests_total

    status, error, engine_requests = run(main())
    assert status == 400 and error["code"] == "context_length_exceeded" and "256" in error["message"], error
    counted_here = dialect in ("vllm", "llamacpp")  # they count tokens; SGLang and plain OpenAI servers do not
    assert engine_requests == (0 if counted_here else 1)


def test_the_guard_comes_before_any_engine_and_unknown_models_are_404(tmp_path):
    async def main():
        async with gateway(tmp_path) as gw:
            no_key = await gw.client.post("/v1/chat/completions", json=chat_body("hi"), headers={"Authorization": ""})
            unknown = await gw.client.post("/v1/chat/completions", json={**chat_body("hi"), "model": "nope"})
            return no_key, unknown, gw.sim.requests_total

    no_key, unknown, engine_requests = run(main())
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    assert unknown.status_code == 404 and "deepseek-r1" in unknown.json()["error"]["message"]
    assert engine_requests == 0


def test_crlf_streams_from_an_openai_server_arrive_whole(tmp_path):
    async def main():
        async with gateway(tmp_path, dialect="openai", sim={"crlf": True}) as gw:
            return await answer(gw.client, "one two", True)

    text, reasoning, _ = run(main())
    assert text == "Echo: one two" and reasoning.startswith("Thinking")


def test_an_openai_server_that_goes_away_is_taken_out_and_back(tmp_path):
    """What tests/integration/test_remote_engine.py did with a subprocess stub, in-process."""
    from seekstack.sim import Faults

    async def main():
        async with gateway(tmp_path, dialect="openai") as gw:
            ok = (await gw.client.post("/v1/chat/completions", json=chat_body("hi"))).status_code
            gw.sim.set_faults(Faults(refuse=True))
            for _ in range(100):
                if (await gw.client.get("/readyz")).status_code != 200:
                    break
                await asyncio.sleep(0.05)
            down = await gw.client.post("/v1/chat/completions", json=chat_body("hi"))
            health = gw.app.state.supervisor.replicas["deepseek-r1"][0].health
            gw.sim.set_faults(Faults())
            for _ in range(100):
                if (await gw.client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            again = (await gw.client.post("/v1/chat/completions", json=chat_body("hi"))).status_code
            return ok, down, health, again

    ok, down, health, again = run(main())
    assert ok == 200 and again == 200
    assert down.status_code == 503 and "retry-after" in down.headers
    assert health.state == "down" and "no answer" in health.reason


def test_a_stream_broken_mid_way_ends_with_one_error_event(tmp_path):
    from seekstack.sim import Faults

    async def main():
        async with gateway(tmp_path, dialect="vllm") as gw:
            gw.sim.set_faults(Faults(break_after=4))
            r = await gw.client.post("/v1/chat/completions", json=chat_body("a b c d e f", stream=True))
            return r

    r = run(main())
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]
    assert "error" in events[-1] and all("error" not in e for e in events[:-1])
    assert events[-1]["error"]["code"] == "engine_error"


def test_engine_load_is_read_into_the_registry_and_saturation_is_degraded(tmp_path):
    from seekstack.sim import Faults

    async def main():
        async with gateway(tmp_path, dialect="sglang", sim={"max_num_seqs": 1}) as gw:
            gw.sim.set_faults(Faults(slow=200))  # 40 ms a token
            tasks = [asyncio.create_task(gw.client.post("/v1/chat/completions", json=chat_body("a b c d"))) for _ in range(3)]
            replica = gw.app.state.supervisor.replicas["deepseek-r1"][0]
            seen = []
            for _ in range(40):
                await asyncio.sleep(0.05)
                seen.append((replica.load, replica.health))
            gw.sim.set_faults(Faults())
            await asyncio.gather(*tasks)
            await asyncio.sleep(0.3)
            return seen, replica.health

    seen, after = run(main())
    assert any(load.running == 1 and load.queued == 2 and 0 < load.kv_use <= 1 and health.state == "degraded"
               and health.reason == "2 request(s) waiting in the engine" for load, health in seen), seen
    assert after.state == "ready"  # saturation over: ready again
