"""Ollama's API, through the official `ollama` client, governed like /v1 (issue 20 item 7)."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import as_key, auditor_key, make_key, make_user

ollama = pytest.importorskip("ollama")  # a test extra: `make test` installs it

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=60)


def test_chat_answers_in_ollamas_shape_streamed_and_not(client):
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "Say hi"}], options={"num_predict": 4})
    assert reply.done and reply.message.role == "assistant" and reply.message.content
    assert reply.eval_count == 4 and reply.prompt_eval_count > 5 and reply.done_reason == "length"
    parts = list(client.chat(model=MODEL, messages=[{"role": "user", "content": "Count to five."}],
                             options={"num_predict": 6, "temperature": 0}, stream=True))
    assert len(parts) >= 2 and not parts[0].done and parts[-1].done
    assert "".join(p.message.content or "" for p in parts)
    # the budget, unless the model ended its answer first — its end-of-text may be the budget's
    # last token (CI saw an answer that ended so, sampled)
    last = parts[-1]
    assert last.eval_count == 6 if last.done_reason == "length" else last.done_reason == "stop" and 1 <= last.eval_count <= 6, \
        (last.done_reason, last.eval_count)


def test_generate_and_a_raw_prompt(client):
    reply = client.generate(model=MODEL, prompt="The capital of France is", options={"num_predict": 3, "temperature": 0})
    assert reply.done and reply.response and reply.eval_count == 3
    raw = client.generate(model=MODEL, prompt="1, 2, 3,", raw=True, options={"num_predict": 2})
    assert raw.done and raw.eval_count == 2
    streamed = list(client.generate(model=MODEL, prompt="Hi", options={"num_predict": 3}, stream=True))
    assert streamed[-1].done and "".join(p.response for p in streamed)


def test_embed_tags_show_ps_version(client):
    embedded = client.embed(model="smollm2-135m-embed", input=["hello", "world"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) > 100
    names = {m.model for m in client.list().models}
    assert {"smollm2-135m", "smollm2-small-ctx", "smollm2-135m-embed"} <= names
    shown = client.show(MODEL)
    assert "completion" in shown.capabilities and shown.modelinfo["context_length"] == 2048
    assert MODEL in {m.model for m in client.ps().models}


def test_it_is_governed_like_v1(server):
    """No key: 401; a key limited to one model sees and uses only that; the audit log has the requests."""
    anonymous = ollama.Client(host=server.url, timeout=30)
    with pytest.raises(ollama.ResponseError) as refused:
        anonymous.list()
    assert refused.value.status_code == 401
    key = make_key(server, make_user(server, "api_consumer"), models=["smollm2-small-ctx"])
    limited = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert {m.model for m in limited.list().models} == {"smollm2-small-ctx"}
    with pytest.raises(ollama.ResponseError) as denied:
        limited.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert denied.value.status_code == 403 and "may not use model" in denied.value.error
    answered = limited.chat(model="smollm2-small-ctx", messages=[{"role": "user", "content": "Hi"}],
                            options={"num_predict": 2})
    assert answered.done
    with pytest.raises(ollama.ResponseError) as long:
        limited.chat(model="smollm2-small-ctx", messages=[{"role": "user", "content": "word " * 3000}])
    assert long.value.status_code == 400 and "context length" in long.value.error
    with as_key(server, auditor_key(server)) as auditor:
        records = auditor.get("/admin/v1/audit", params={"limit": 10000}).json()["data"]
    chats = [r for r in records if r.get("endpoint") == "/api/chat" and r["event"] == "response"]
    assert any(r["model"] == "smollm2-small-ctx" and r["completion_tokens"] == 2 for r in chats)


def test_bad_bodies_are_ollama_errors_not_server_errors(server):
    headers = {"Authorization": f"Bearer {server.key}"}
    for body in ({"model": MODEL, "messages": "hi"}, {"model": MODEL, "messages": [{"role": "wizard"}]},
                 {"messages": []}, {"model": MODEL, "messages": [], "keep_alive": [1]}):
        r = httpx.post(server.url + "/api/chat", json=body, headers=headers, timeout=30)
        assert 400 <= r.status_code < 500 and isinstance(r.json()["error"], str), (body, r.status_code, r.text)
    r = httpx.post(server.url + "/api/chat", content=b"{nope", headers=headers, timeout=30)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = httpx.post(server.url + "/api/show", json={"model": "nosuch"}, headers=headers, timeout=30)
    assert r.status_code == 404 and json.loads(r.text)["error"]


def test_an_empty_request_preloads_a_model_that_loads_on_demand_and_keep_alive_0_is_refused(tmp_path):
    """Ollama's preload (`generate` with no prompt, `chat` with no messages) and unload (the same
    with keep_alive 0, what `ollama stop` sends). Simulated llama.cpp (it stands in for the engine),
    two models taking turns in a budget that holds one (tests/integration/test_models_take_turns.py)."""
    from conftest import Server
    from test_keep_alive import state
    from test_models_take_turns import one_at_a_time

    server = Server(tmp_path, one_at_a_time({"kind": "llamacpp", "simulate": True})).start()
    client = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=60)
    assert [state(server, m) for m in "ab"] == ["ready", "unloaded"]
    loaded = client.generate(model="b")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    assert [state(server, m) for m in "ab"] == ["unloaded", "ready"]  # b loaded (a made room), nothing generated
    assert [m.model for m in client.ps().models] == ["b"]
    loaded = client.chat(model="a", messages=[])
    assert loaded.done_reason == "load" and loaded.message.content == ""
    assert [state(server, m) for m in "ab"] == ["ready", "unloaded"]
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model="a", keep_alive=0)
    assert refused.value.status_code == 403 and "seekstack models unload a" in refused.value.error
    assert state(server, "a") == "ready"
    with pytest.raises(ollama.ResponseError) as missing:
        client.generate(model="nosuch")
    assert missing.value.status_code == 404
    only_a = ollama.Client(host=server.url, timeout=60,
                           headers={"Authorization": f"Bearer {make_key(server, make_user(server, 'api_consumer'), models=['a'])}"})
    with pytest.raises(ollama.ResponseError) as forbidden:  # a key that may not use b does not load it
        only_a.generate(model="b")
    assert forbidden.value.status_code == 403 and state(server, "b") == "unloaded"
    auditor = as_key(server, auditor_key(server))
    assert auditor.get("/admin/v1/audit", params={"event": "model_load"}).json()["data"]  # audited like any load
