"""Rerankers: `POST /v1/rerank` scores documents against a query — the second model a retrieval
stack (Dify, RAGFlow, FastGPT) needs beside an embedding model — under every control a chat
request passes: the key and its role, quotas, PII policy, the audit record, fallbacks.

A real reranker GGUF is not to be had offline, so the embedded SmolLM2 stands in for one: llama.cpp
runs it in its reranking mode (rank pooling, as `llama-server --reranking`) and its scores are real
engine output, though not meaningful ones. vLLM and SGLang rerankers need GPUs: the engine
simulator stands in for them (its score is the share of the query's words a document holds).
"""

from __future__ import annotations

import re

import httpx
import pytest

from conftest import Server, as_key, auditor_key, make_key, make_user, start_sim

SMALL = {"source": "embedded", "context": 512, "slots": 1, "prompt_cache_mib": 0}
QUERY = "What is the capital of France?"
DOCS = ["Paris is the capital of France.", {"text": "Berlin is the capital of Germany."}, "Call me on 13812345678."]
TEXTS = [d if isinstance(d, str) else d["text"] for d in DOCS]


def rerank(client, **body):
    return client.post("/v1/rerank", json=body)


def test_a_llama_cpp_reranker_scores_documents_under_every_control(tmp_path):
    server = Server(tmp_path, {"models": [{"name": "reranker", "rerank": True, **SMALL}, {"name": "chat", **SMALL}],
                               "roles": {"chatter": {"permissions": ["inference:chat", "models:read"]}}}).start()
    answer = rerank(server.http, model="reranker", query=QUERY, documents=DOCS)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert (data["object"], data["model"]) == ("list", "reranker") and data["id"].startswith("rerank-")
    results = data["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3  # the engine's own, best first
    assert [r["document"]["text"] for r in results] == [TEXTS[r["index"]] for r in results]
    assert data["usage"]["prompt_tokens"] == data["usage"]["total_tokens"] > 3 * 8  # the query with each document

    top = rerank(server.http, model="reranker", query=QUERY, documents=DOCS, top_n=2, return_documents=False).json()
    assert [r["index"] for r in top["results"]] == [r["index"] for r in results[:2]]
    assert [r["relevance_score"] for r in top["results"]] == pytest.approx(scores[:2], rel=1e-4)
    assert all("document" not in r for r in top["results"])

    # a reranker does not chat, a chat model does not rerank; bad requests name their field
    chat = server.http.post("/v1/chat/completions", json={"model": "reranker", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "unsupported", chat.text
    not_one = rerank(server.http, model="chat", query=QUERY, documents=DOCS)
    assert not_one.status_code == 400 and "is not a reranker" in not_one.json()["error"]["message"], not_one.text
    for body, param in (({"query": QUERY}, "documents"), ({"query": QUERY, "documents": []}, "documents"),
                        ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n"),
                        ({"query": 5, "documents": DOCS}, "query")):
        bad = rerank(server.http, model="reranker", **body)
        assert bad.status_code == 400 and bad.json()["error"]["param"].startswith(param), (body, bad.text)
    too_long = rerank(server.http, model="reranker", query=QUERY, documents=["the quick brown fox " * 400])
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded", too_long.text

    # the key and its role: none, 401; a role without inference:rerank, 403
    assert rerank(as_key(server, "sk-not-a-key"), model="reranker", query=QUERY, documents=DOCS).status_code == 401
    with as_key(server, make_key(server, make_user(server, "chatter"))) as chatter:
        denied = rerank(chatter, model="reranker", query=QUERY, documents=DOCS)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied", denied.text

    # the audit record: the model, the tokens, and the phone number found (detect, the default) — not its value
    with as_key(server, auditor_key(server)) as auditor:
        records = auditor.get("/admin/v1/audit", params={"event": "response", "limit": 100}).json()["data"]
    first = next(r for r in records if r.get("request_id") == answer.headers["x-request-id"])
    assert (first["model"], first["status"], first["pii"]) == ("reranker", 200, {"cn_mobile": 1})
    assert first["prompt_tokens"] == data["usage"]["prompt_tokens"]
    assert "13812345678" not in server.log_path.read_text()

    # the console says what each model serves, and offers only the chat model in the playground
    from seekstack.governance.sessions import COOKIE

    session = {COOKIE: httpx.post(server.url + "/console/session",
                                  headers={"Authorization": f"Bearer {server.key}"}).cookies[COOKIE]}
    for lang, said in (("en", ["reranking (/v1/rerank)", "chat and completions"]), ("zh-CN", ["重排序（/v1/rerank）", "对话与补全"])):
        page = httpx.get(server.url + "/console/models", params={"lang": lang}, cookies=session).text
        assert re.findall(r'<dd class="task">(.*?)</dd>', page) == said
    playground = httpx.get(server.url + "/console/playground", cookies=session).text
    assert 'value="chat"' in playground and 'value="reranker"' not in playground


def test_vllm_and_sglang_rerankers_answer_alike_under_pii_policy_and_fall_back(tmp_path):
    vllm, vllm_port = start_sim("--dialect", "vllm", "--model", "bge-vllm")
    sglang, sglang_port = start_sim("--dialect", "sglang", "--model", "bge-sglang")
    try:
        server = Server(tmp_path, {
            "models": [{"name": "bge-vllm", "rerank": True, "engine": {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{vllm_port}"]}},
                       {"name": "bge-sglang", "rerank": True, "fallbacks": ["bge-vllm"],
                        "engine": {"kind": "sglang", "endpoints": [f"http://127.0.0.1:{sglang_port}"]}}],
            "pii": {"models": {"bge-vllm": "mask", "bge-sglang": "tokenize"}}}).start()
        docs = ["Paris is the capital of France", "Berlin", "France"]
        answers = {name: rerank(server.http, model=name, query="capital of France", documents=docs).json()
                   for name in ("bge-vllm", "bge-sglang")}  # vLLM's results, SGLang's bare list: one shape
        for name, data in answers.items():
            assert data["model"] == name, data
            assert [(r["index"], round(r["relevance_score"], 3), r["document"]["text"]) for r in data["results"]] == [
                (0, 1.0, docs[0]), (2, 0.333, docs[2]), (1, 0.0, docs[1])]
            assert data["usage"]["prompt_tokens"] > 0

        # what the engine sees: under mask both numbers are [CN_MOBILE] (one score for both), under
        # tokenize each its own placeholder (the ranking kept, and the client's text given back)
        phones = ["13812345678 called", "13912345678 called"]
        masked = rerank(server.http, model="bge-vllm", query="who is 13812345678", documents=phones).json()["results"]
        assert [(r["index"], r["document"]["text"]) for r in masked] == [(0, "[CN_MOBILE] called"), (1, "[CN_MOBILE] called")]
        assert masked[0]["relevance_score"] == masked[1]["relevance_score"] > 0
        tokenized = rerank(server.http, model="bge-sglang", query="who is 13812345678", documents=phones).json()["results"]
        assert [(r["index"], r["document"]["text"]) for r in tokenized] == [(0, phones[0]), (1, phones[1])]
        assert tokenized[0]["relevance_score"] > tokenized[1]["relevance_score"] == 0

        # the SGLang host goes away: its requests are answered by the vLLM reranker, and say so
        sglang.kill()
        sglang.wait()
        fell = rerank(server.http, model="bge-sglang", query="capital of France", documents=docs)
        assert fell.status_code == 200 and fell.json()["model"] == "bge-vllm", fell.text
        assert fell.headers["x-seekstack-fallback-from"] == "bge-sglang"
    finally:
        for sim in (vllm, sglang):
            sim.kill()
            sim.wait()


def test_embedding_inputs_pass_the_pii_policy_too(tmp_path):
    """What an embedding model is sent is a prompt like any other: masked under `mask` (the
    simulator's vector is a hash of the text it got), counted under `detect`."""
    sim, port = start_sim("--dialect", "vllm", "--model", "emb")
    try:
        endpoint = {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{port}"]}
        server = Server(tmp_path, {"models": [{"name": "emb", "embeddings": True, "engine": endpoint}],
                                   "pii": {"teams": {"masked": "mask"}}}).start()
        assert server.security.post("/admin/v1/teams", json={"name": "masked"}).status_code == 201
        masked_user = make_user(server, "api_consumer", team="masked")

        def embed(client, text):
            answer = client.post("/v1/embeddings", json={"model": "emb", "input": [text, "no number here"]})
            assert answer.status_code == 200, answer.text
            return answer

        detected = embed(server.http, "call 13812345678")
        with as_key(server, make_key(server, masked_user)) as masked:
            assert embed(masked, "call 13812345678").json()["data"][0]["embedding"] == \
                embed(masked, "call [CN_MOBILE]").json()["data"][0]["embedding"]
        assert embed(server.http, "call 13812345678").json()["data"][0]["embedding"] != \
            embed(server.http, "call [CN_MOBILE]").json()["data"][0]["embedding"]
        with as_key(server, auditor_key(server)) as auditor:
            records = auditor.get("/admin/v1/audit", params={"event": "response", "limit": 100}).json()["data"]
        record = next(r for r in records if r.get("request_id") == detected.headers["x-request-id"])
        assert record["pii"] == {"cn_mobile": 1}
    finally:
        sim.kill()
        sim.wait()
