"""Model fallbacks (traffic/fallbacks.py) on a real `seekstack serve`: when the model asked for
cannot take a request — its engines are down, its queue is full, the prompt is too long for
it — the next of its `fallbacks` answers, named in the answer, a header, the audit record and
the metrics; a key that may not use the fallback gets the model's own error.

`deepseek-r1` runs on "a GPU host": `seekstack sim` in vLLM's dialect stands in for it (no GPU
here). Its fallback, `r1-distill`, is the embedded model on real llama.cpp, and so is `short`."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import httpx
import yaml
from openai import OpenAI

from conftest import SEEKSTACK, Server, as_key, auditor_key, make_key, make_user, start_sim
from test_quotas import set_limits
from test_supervision import wait_until

HELLO = [{"role": "user", "content": "Hello"}]
LOCAL = {"source": "embedded", "slots": 2, "prompt_cache_mib": 0}


def fallback_config(gpu_port: int, **r1) -> dict:
    return {"models": [
        {"name": "deepseek-r1", "context": 4096, "engine": {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{gpu_port}"]},
         "fallbacks": ["r1-distill"], **r1},
        {"name": "r1-distill", "context": 2048, **LOCAL},
        {"name": "short", "context": 512, **LOCAL, "fallbacks": ["deepseek-r1", "r1-distill"],
         "fallback_on": ["context_length"]}]}


def state(server: Server, model: str) -> str:
    return server.http.get("/readyz").json()["models"][model]


def fallbacks_shown(page: str) -> list[str | None]:
    """Each model card's fallbacks on the console's models page, as text (None: it has none)."""
    shown = []
    for card in page.split('<section class="card" aria-labelledby="dep-')[1:]:
        found = re.search(r'<dd class="fallbacks">(.*?)</dd>', card, re.S)
        shown.append(" ".join(re.sub(r"<[^>]+>", "", found.group(1)).split()) if found else None)
    return shown


def test_a_model_that_is_down_is_answered_by_its_fallback(tmp_path):
    gpu, port = start_sim("--dialect", "vllm", "--model", "deepseek-r1")
    server = Server(tmp_path, fallback_config(port)).start()
    client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=60)
    up = client.chat.completions.with_raw_response.create(model="deepseek-r1", max_tokens=4, messages=HELLO)
    assert up.parse().model == "deepseek-r1" and "x-seekstack-fallback-from" not in up.headers

    gpu.kill()  # the GPU host goes away
    gpu.wait()
    first = client.chat.completions.with_raw_response.create(model="deepseek-r1", max_tokens=8, messages=HELLO)
    assert first.parse().model == "r1-distill" and first.parse().choices[0].message.content  # found down by this request, or already ejected
    assert first.headers["x-seekstack-fallback-from"] == "deepseek-r1"
    assert wait_until(lambda: state(server, "deepseek-r1") != "ready", 10)

    chunks = list(client.chat.completions.create(model="deepseek-r1", max_tokens=8, messages=HELLO, stream=True))
    assert {c.model for c in chunks} == {"r1-distill"} and "".join(c.choices[0].delta.content or "" for c in chunks
                                                                    if c.choices)
    text = client.completions.create(model="deepseek-r1", prompt="Once upon a time", max_tokens=4)
    assert text.model == "r1-distill" and text.choices[0].text
    ollama = server.http.post("/api/chat", json={"model": "deepseek-r1", "stream": False, "messages": HELLO,
                                                 "options": {"num_predict": 4}})
    assert ollama.status_code == 200 and ollama.json()["message"]["content"], ollama.text

    # a prompt longer than `short`'s context goes to the next fallback with a longer one that is
    # up (deepseek-r1 is down: passed over); a short prompt stays on `short`
    long_prompt = [{"role": "user", "content": "Summarise this: " + "the quick brown fox jumps over it. " * 120}]
    assert client.chat.completions.create(model="short", max_tokens=4, messages=long_prompt).model == "r1-distill"
    assert client.chat.completions.create(model="short", max_tokens=4, messages=HELLO).model == "short"
    # too long for every one: short's own error, naming what was tried and why
    longer = [{"role": "user", "content": "call me on 13812345678. " + "the quick brown fox jumps over it. " * 600}]
    refused = server.http.post("/v1/chat/completions", json={"model": "short", "max_tokens": 4, "messages": longer})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"
    assert "context length is 512 tokens; fallbacks tried: deepseek-r1 (unavailable), r1-distill (context_length)" \
        in refused.json()["error"]["message"], refused.text

    # a key that may use deepseek-r1 but not its fallback gets deepseek-r1's own error, naming nothing else
    only_r1 = make_key(server, make_user(server, "api_consumer"), models=["deepseek-r1"])
    with as_key(server, only_r1) as c:
        refused = c.post("/v1/chat/completions", json={"model": "deepseek-r1", "max_tokens": 4, "messages": HELLO})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "engine_unavailable", refused.text
    assert "r1-distill" not in refused.text and "x-seekstack-fallback-from" not in refused.headers
    # a key that may not use deepseek-r1 gets no fallback through it
    only_distill = make_key(server, make_user(server, "api_consumer"), models=["r1-distill"])
    with as_key(server, only_distill) as c:
        denied = c.post("/v1/chat/completions", json={"model": "deepseek-r1", "max_tokens": 4, "messages": HELLO})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied", denied.text
    # nor does `short`'s context error mention a fallback to a key without it
    only_short = make_key(server, make_user(server, "api_consumer"), models=["short"])
    with as_key(server, only_short) as c:
        too_long = c.post("/v1/chat/completions", json={"model": "short", "max_tokens": 4, "messages": long_prompt})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"

    auditor = as_key(server, auditor_key(server))
    records = auditor.get("/admin/v1/audit", params={"event": "response", "limit": 100}).json()["data"]
    fell_back = sorted((r["model"], r.get("fallback_from")) for r in records if r.get("fallback_from"))
    assert fell_back == [("r1-distill", "deepseek-r1")] * 4 + [("r1-distill", "short")], fell_back
    assert sorted((r["model"] or "-", r["status"]) for r in records if r.get("key_id") and r["status"] >= 400) == [
        ("-", 403), ("deepseek-r1", 503), ("short", 400), ("short", 400)]  # refused before a model: none named
    # no model answered the longer prompt: its record still says what was found in it
    assert {"cn_mobile": 1} in [r.get("pii") for r in records if (r["model"], r["status"]) == ("short", 400)]
    metrics = server.http.get("/metrics").text
    assert 'seekstack_fallbacks_total{model="deepseek-r1",reason="unavailable",to="r1-distill"} 4.0' in metrics
    assert 'seekstack_fallbacks_total{model="short",reason="context_length",to="r1-distill"} 1.0' in metrics

    # the console's models page says which models answer in each one's place, and when
    from seekstack.governance.sessions import COOKIE

    session = {COOKIE: httpx.post(server.url + "/console/session",
                                  headers={"Authorization": f"Bearer {server.key}"}).cookies[COOKIE]}
    for lang, said in (("en", ["r1-distill (when it is down; when it is full)", None,
                               "deepseek-r1, r1-distill (for prompts too long for it)"]),
                       ("zh-CN", ["r1-distill (不可用时; 过载时)", None, "deepseek-r1, r1-distill (提示超出其上下文时)"])):
        page = httpx.get(server.url + "/console/models", params={"lang": lang}, cookies=session).text
        assert fallbacks_shown(page) == said

    # a reload that drops the fallback applies at once and leaves the engines as they are
    pids = {r["model"]: r["pid"] for r in server.replicas() if r["pid"]}
    config = yaml.safe_load(server.config_path.read_text())
    config["models"][0]["fallbacks"] = []
    server.config_path.write_text(yaml.safe_dump(config))
    result = subprocess.run([*SEEKSTACK, "config", "reload", "--url", server.url, "--api-key", server.key,
                             "--config", str(server.config_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "rerouted: deepseek-r1" in result.stdout, result.stdout + result.stderr
    assert "changed:" not in result.stdout  # no engine was replaced
    gone = server.http.post("/v1/chat/completions", json={"model": "deepseek-r1", "max_tokens": 4, "messages": HELLO})
    assert gone.status_code == 503 and "fallbacks tried" not in gone.text
    assert {r["model"]: r["pid"] for r in server.replicas() if r["pid"]} == pids


def test_an_overloaded_model_spills_over_to_its_fallback_and_gives_back_what_it_reserved(tmp_path):
    """`deepseek-r1` (the simulator, 3 s streams) takes one request and lets none wait: a second
    one goes to r1-distill (real llama.cpp) after its token reservation on deepseek-r1 was made —
    the reservation is given back, so the key's budget is charged what r1-distill used, once."""
    gpu, port = start_sim("--dialect", "vllm", "--model", "deepseek-r1", "--itl-ms", "30", "--output-len", "100")
    try:
        server = Server(tmp_path, fallback_config(port, fallback_on=["overloaded"],
                                                  queue={"concurrency": 1, "max_waiting": 0})).start()
        user = make_user(server, "api_consumer")
        key = make_key(server, user)
        set_limits(server, "user", user, tpm=20000)

        async def spill() -> tuple[httpx.Response, str]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                         headers={"Authorization": f"Bearer {server.key}"}) as admin, \
                    httpx.AsyncClient(base_url=server.url, timeout=60,
                                      headers={"Authorization": f"Bearer {key}"}) as user_client:
                async with admin.stream("POST", "/v1/chat/completions", json={
                        "model": "deepseek-r1", "stream": True, "messages": HELLO}) as busy:
                    chunks = busy.aiter_text()
                    first = await chunks.__anext__()  # the stream has deepseek-r1's one slot (a sleep was not sure)
                    spilled = await user_client.post("/v1/chat/completions",
                                                     json={"model": "deepseek-r1", "messages": HELLO})
                    return spilled, first + "".join([chunk async for chunk in chunks])

        spilled, stream = asyncio.run(spill())
        assert stream.rstrip().endswith("data: [DONE]") and '"error"' not in stream  # the busy stream was whole
        assert spilled.status_code == 200 and spilled.json()["model"] == "r1-distill", spilled.text
        assert spilled.headers["x-seekstack-fallback-from"] == "deepseek-r1"
        used = spilled.json()["usage"]["total_tokens"]
        time.sleep(0.2)  # the request's settlement runs after its last byte
        with as_key(server, key) as c:
            after = c.post("/v1/chat/completions", json={"model": "r1-distill", "max_tokens": 2, "messages": HELLO})
        assert after.status_code == 200
        # what the counters held when `after` was admitted: r1-distill's use only (deepseek-r1's
        # reservation of its whole 4,096-token context was given back)
        assert int(after.headers["x-ratelimit-remaining-tokens"]) == 20000 - used, (after.headers, used)
        metrics = server.http.get("/metrics").text
        assert 'seekstack_fallbacks_total{model="deepseek-r1",reason="overloaded",to="r1-distill"} 1.0' in metrics
        assert 'seekstack_queue_rejected_total{model="deepseek-r1",reason="full"} 1.0' in metrics
    finally:
        gpu.kill()
        gpu.wait()


def test_an_embedding_input_too_long_for_one_model_is_embedded_by_its_fallback(tmp_path):
    """Real llama.cpp in embedding mode, the embedded model twice: contexts of 512 and 2,048."""
    embedding = {"source": "embedded", "embeddings": True, "slots": 1, "prompt_cache_mib": 0}
    server = Server(tmp_path, {"models": [
        {"name": "emb", "context": 512, **embedding, "fallbacks": ["emb-long"], "fallback_on": ["context_length"]},
        {"name": "emb-long", "context": 2048, **embedding}]}).start()
    client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=60)
    short = client.embeddings.with_raw_response.create(model="emb", input="a short text")
    assert short.parse().model == "emb" and "x-seekstack-fallback-from" not in short.headers
    long = client.embeddings.with_raw_response.create(model="emb", input="the quick brown fox jumps over it. " * 120)
    assert long.parse().model == "emb-long" and long.headers["x-seekstack-fallback-from"] == "emb"
    assert len(long.parse().data[0].embedding) == len(short.parse().data[0].embedding) > 0
    assert long.parse().usage.prompt_tokens > 512
