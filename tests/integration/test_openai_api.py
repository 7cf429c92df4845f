"""The OpenAI-compatible API against a real `seekstack serve`, through the official openai client.

Every response body and stream chunk is validated against OpenAI's published schemas.
"""

import json

import httpx
import openai
import pytest

from conftest import engine_request

MODEL = "smollm2-135m"
HELLO = [{"role": "user", "content": "Say hello."}]


def test_models_lists_configured_ids(client, schema, server):
    models = client.models.list()
    assert [m.id for m in models.data] == ["smollm2-135m", "smollm2-small-ctx", "smollm2-135m-embed"]
    schema("ListModelsResponse", server.http.get("/v1/models").json())


def test_chat_non_stream(client, schema):
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=16)
    body = reply.model_dump(exclude_unset=True)
    schema("CreateChatCompletionResponse", body)
    assert reply.model == MODEL
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # DeepSeek's cache fields are filled too
    extra = reply.usage.model_extra
    assert extra["prompt_cache_hit_tokens"] + extra["prompt_cache_miss_tokens"] == usage.prompt_tokens


def test_chat_stream_with_usage(client, schema):
    stream = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    for chunk in chunks:
        schema("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        assert chunk.model == MODEL
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["stop"], ["length"])
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert 0 < usage.completion_tokens <= 12 and usage.prompt_tokens > 0


def test_chat_stream_without_usage_sends_none(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_stream_is_not_buffered(server):
    """The first token reaches the client while the engine is still generating the rest."""
    engine = next(r for r in server.replicas() if r["model"] == MODEL)["base_url"]
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 400, "stream": True, "ignore_eos": True}
    with server.http.stream("POST", "/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()  # keep a reference: a collected iterator closes the stream (= client gone)
        for line in lines:
            if line.startswith("data: ") and '"content":"' in line:
                break
        slots = engine_request(engine, "GET", "/slots").json()
        assert any(s["is_processing"] for s in slots)


def test_completions(client, schema):
    reply = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8)
    schema("CreateCompletionResponse", reply.model_dump(exclude_unset=True))
    assert reply.model == MODEL and reply.choices[0].text
    assert reply.usage.completion_tokens <= 8


def test_completions_stream(client, schema):
    chunks = list(client.completions.create(model=MODEL, prompt="One, two,", max_tokens=6, stream=True))
    for chunk in chunks:
        schema("CompletionStreamChunk", chunk.model_dump(exclude_unset=True))
    assert "".join(c.choices[0].text for c in chunks)


def test_batched_completions_answer_each_prompt_and_count_them_all(server, client, schema):
    """A list of prompts (strings or token ids) gets one choice per prompt, and usage — what the
    quotas charge and the usage table records — covers every prompt, not only the last one."""
    from conftest import as_key, make_key, make_user

    texts = ["One, two,", "Red, green,"]
    alone = sum(client.completions.create(model=MODEL, prompt=text, max_tokens=1).usage.prompt_tokens for text in texts)
    user = make_user(server, "api_consumer")
    caller = as_key(server, make_key(server, user))
    for prompt, prompt_tokens in ((texts, alone), ([[16, 17, 18], [19, 20, 21]], 6)):
        for stream in (False, True):
            body = {"model": MODEL, "prompt": prompt, "max_tokens": 3, "ignore_eos": True, "stream": stream}
            if stream:
                body["stream_options"] = {"include_usage": True}
            r = caller.post("/v1/completions", json=body)
            assert r.status_code == 200, r.text
            if stream:
                chunks = [json.loads(line[6:]) for line in r.text.splitlines()
                          if line.startswith("data: ") and line != "data: [DONE]"]
                for chunk in chunks:
                    schema("CompletionStreamChunk", chunk)
                usage = [c["usage"] for c in chunks if c.get("usage")][-1]  # the last report: the whole request
                indexes = {choice["index"] for c in chunks for choice in c["choices"]}
            else:
                reply = r.json()
                schema("CreateCompletionResponse", reply)
                usage, indexes = reply["usage"], {choice["index"] for choice in reply["choices"]}
            assert indexes == {0, 1}, (prompt, stream)
            assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == \
                (prompt_tokens, 6, prompt_tokens + 6), (prompt, stream, usage)
    rows = [row for row in server.http.get("/admin/v1/usage").json()["data"] if row["user"] == user]
    assert sum(row["requests"] for row in rows) == 4 and sum(row["completion_tokens"] for row in rows) == 4 * 6


def test_embeddings(client, schema):
    reply = client.embeddings.create(model="smollm2-135m-embed", input=["hello world", "你好，世界"])
    schema("CreateEmbeddingResponse", reply.model_dump(exclude_unset=True))
    assert len(reply.data) == 2 and len(reply.data[0].embedding) == 576  # SmolLM2-135M hidden size
    assert reply.usage.prompt_tokens > 0


def test_many_sequential_streams_reuse_pool(client):
    """llama.cpp drops the connection after each stream; the gateway must not trip over it."""
    for _ in range(6):
        chunks = list(client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3, stream=True))
        assert chunks
        assert client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3).choices


# ------------------------------------------------------------------ errors


def assert_error(response: httpx.Response, status: int, schema, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    schema("ErrorResponse", body)
    assert "Traceback" not in response.text
    for word in words:
        assert word in body["error"]["message"], (word, body)
    return body["error"]


def test_malformed_json_is_400(server, schema):
    r = server.http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={"content-type": "application/json"})
    assert_error(r, 400, schema, "not valid JSON")


def test_non_object_body_is_400(server, schema):
    r = server.http.post("/v1/chat/completions", json=[1, 2])
    assert_error(r, 400, schema, "JSON object")


def test_wrong_types_are_400_naming_the_field(server, schema):
    r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": "hi"})
    err = assert_error(r, 400, schema, "messages")
    assert err["param"] == "messages"
    r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "temperature": "hot"})
    assert_error(r, 400, schema, "temperature")


def test_missing_field_via_openai_client(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])


def test_unknown_model_is_404_listing_models(client, server, schema):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert "smollm2-135m" in str(info.value) and "smollm2-small-ctx" in str(info.value)
    r = server.http.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    assert assert_error(r, 404, schema, "available models")["code"] == "model_not_found"


def test_prompt_longer_than_context_is_400_with_both_numbers(client, server, schema):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 60  # ~600 tokens > 256
    r = server.http.post("/v1/chat/completions",
                   json={"model": "smollm2-small-ctx", "messages": [{"role": "user", "content": long_prompt}]})
    err = assert_error(r, 400, schema, "context length is 256 tokens")
    assert err["code"] == "context_length_exceeded"
    n_prompt = int(err["message"].split("the prompt is ")[1].split(" ")[0])
    assert n_prompt > 256
    # same through completions, and through the openai client
    r = server.http.post("/v1/completions", json={"model": "smollm2-small-ctx", "prompt": long_prompt})
    assert_error(r, 400, schema, "256")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2-small-ctx", messages=[{"role": "user", "content": long_prompt}])
    # the engine is not stalled: the same model answers right after
    ok = client.chat.completions.create(model="smollm2-small-ctx", messages=HELLO, max_tokens=4)
    assert ok.choices[0].message.content is not None


def test_huge_prompt_does_not_stall(client, server, schema):
    huge = "word " * 200_000  # ~1 MB, far beyond any context
    r = server.http.post("/v1/chat/completions", timeout=60,
                   json={"model": MODEL, "messages": [{"role": "user", "content": huge}]})
    assert_error(r, 400, schema, "context length is 2048 tokens")
    assert client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2).choices


def test_embedding_input_longer_than_context_is_400_with_both_numbers(client, server, schema):
    # llama.cpp answers an over-long embedding input with HTTP 500 ("increase the physical batch
    # size"): the gateway checks it first, like a prompt, for text and for token ids.
    for text in ("word " * 2000, ["short", "word " * 700], list(range(1, 700)), [[1, 2], list(range(1, 700))]):
        r = server.http.post("/v1/embeddings", json={"model": "smollm2-135m-embed", "input": text})
        err = assert_error(r, 400, schema, "context length is 512 tokens")
        assert err["code"] == "context_length_exceeded" and err["param"] == "input"
        assert int(err["message"].split("the prompt is ")[1].split(" ")[0]) > 512
    assert client.embeddings.create(model="smollm2-135m-embed", input="still here").data  # and it keeps serving


def test_max_tokens_beyond_context_is_400(server, schema):
    r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 100_000})
    err = assert_error(r, 400, schema, "max_tokens is 100000", "2048")
    assert err["param"] == "max_tokens"


def test_prompt_plus_max_tokens_beyond_context_is_400(server, schema):
    prompt = "alpha beta gamma delta " * 25  # ~100+ tokens
    r = server.http.post("/v1/chat/completions",
                   json={"model": "smollm2-small-ctx", "messages": [{"role": "user", "content": prompt}], "max_tokens": 200})
    assert_error(r, 400, schema, "plus max_tokens (200)", "context length of 256", "set max_tokens to at most")


def test_body_over_limit_is_413(server, schema):
    body = b'{"model": "smollm2-135m", "messages": [{"role": "user", "content": "' + b"a" * (9 * 1024 * 1024) + b'"}]}'
    r = server.http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert_error(r, 413, schema, "larger than the limit")


def test_embeddings_on_chat_model_is_400(server, schema):
    r = server.http.post("/v1/embeddings", json={"model": MODEL, "input": "x"})
    assert_error(r, 400, schema, "does not serve embeddings", "embeddings: true")


def test_chat_on_embedding_model_is_400(server, schema):
    r = server.http.post("/v1/chat/completions", json={"model": "smollm2-135m-embed", "messages": HELLO})
    assert_error(r, 400, schema, "does not serve chat completions")
    r = server.http.post("/v1/completions", json={"model": "smollm2-135m-embed", "prompt": "x"})
    assert_error(r, 400, schema, "does not serve completions")


def test_reasoning_content_sent_back_is_400(server, schema):
    messages = [*HELLO, {"role": "assistant", "content": "Hi", "reasoning_content": "thinking"}, *HELLO]
    r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages})
    assert_error(r, 400, schema, "reasoning_content")


def test_image_and_audio_parts_to_a_text_only_model_are_400(server, schema):
    # llama.cpp without a multimodal projector answers these with HTTP 500: a client error
    # must not reach the client as the engine's failure (502).
    for part in ({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                 {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}):
        messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]
        r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 2})
        error = assert_error(r, 400, schema, "takes text only", part["type"])
        assert error["param"] == "messages.0.content" and error["code"] == "unsupported"
    text_parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": text_parts, "max_tokens": 2})
    assert r.status_code == 200, r.text


def test_unknown_route_is_json_404(server, schema):
    r = server.http.get("/v1/nothing-here")
    assert_error(r, 404, schema)


def test_server_survives_bad_input(client):
    assert client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2).choices
