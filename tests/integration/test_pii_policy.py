"""PII policies through the real gateway and engine: what the model sees, what the client gets.

The engine's output is pinned with a llama.cpp grammar, so the answer is known exactly."""

from __future__ import annotations

import json

import psutil
import pytest

from conftest import as_key, make_key, make_user, auditor_key

RESIDENT_ID = "11010519491231002X"
PHONE = "13812345678"


@pytest.fixture(scope="module")
def team_keys(server):
    keys = {}
    for team in ("pii_mask", "pii_token", "pii_off"):
        if server.security.post("/admin/v1/teams", json={"name": team}).status_code not in (201, 409):
            raise AssertionError(team)
        keys[team] = make_key(server, make_user(server, "api_consumer", team))
    return keys


def chat(client, content, grammar=None, stream=False, max_tokens=24, model="smollm2-135m"):
    body = {"model": model, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    if grammar:
        body["grammar"] = grammar
    if not stream:
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"], r.json()["usage"]["prompt_tokens"], r
    text = []
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:])["choices"]:
                    text.append(choice["delta"].get("content") or "")
    return "".join(text), None, r


def test_mask_sends_the_model_only_the_label(server, team_keys):
    with as_key(server, team_keys["pii_mask"]) as masked, as_key(server, team_keys["pii_off"]) as plain:
        _, seen_masked, _ = chat(masked, f"My ID is {RESIDENT_ID}.", grammar='root ::= "ok"')
        _, seen_label, _ = chat(plain, "My ID is [CN_RESIDENT_ID].", grammar='root ::= "ok"')
        _, seen_raw, _ = chat(plain, f"My ID is {RESIDENT_ID}.", grammar='root ::= "ok"')
    assert seen_masked == seen_label != seen_raw  # the engine tokenized the label, not the number


@pytest.mark.parametrize("stream", [False, True])
def test_mask_covers_the_answer_too(server, team_keys, stream):
    with as_key(server, team_keys["pii_mask"]) as c:
        text, _, _ = chat(c, "Say a number.", grammar=f'root ::= "Call {PHONE} now."', stream=stream)
    assert text == "Call [CN_MOBILE] now."


@pytest.mark.parametrize("stream", [False, True])
def test_tokenize_restores_placeholders_in_the_answer(server, team_keys, stream):
    with as_key(server, team_keys["pii_token"]) as c:
        # the prompt's phone becomes [CN_MOBILE_1]; the model "echoes" it (pinned), token by token
        text, _, _ = chat(c, f"Remember {PHONE}.", grammar='root ::= "Noted: [CN_MOBILE_1]."', stream=stream)
    assert text == f"Noted: {PHONE}."


def test_detect_counts_classes_in_the_audit_only(server, role_keys):
    r = server.http.post("/v1/chat/completions", json={
        "model": "smollm2-135m", "max_tokens": 2, "grammar": 'root ::= "ok"',
        "messages": [{"role": "user", "content": f"ID {RESIDENT_ID}, phone {PHONE}, mail a.b@example.com"}]})
    assert r.status_code == 200
    with as_key(server, role_keys["auditor"]) as auditor:
        records = auditor.get("/admin/v1/audit", params={"limit": 10000}).json()["data"]
    outcome = next(x for x in records if x.get("request_id") == r.headers["x-request-id"] and x["event"] == "response")
    assert outcome["pii"] == {"cn_resident_id": 1, "cn_mobile": 1, "email": 1}


def test_detect_counts_classes_in_a_streamed_answer_without_changing_it(server):
    with server.http.stream("POST", "/v1/chat/completions", json={
            "model": "smollm2-135m", "max_tokens": 24, "stream": True, "grammar": f'root ::= "Call {PHONE} now."',
            "messages": [{"role": "user", "content": "Say a number."}]}) as r:
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"
                       and json.loads(line[6:])["choices"])
        request_id = r.headers["x-request-id"]
    assert text == f"Call {PHONE} now."  # detect (the default) changes nothing
    audit_key = auditor_key(server)
    with as_key(server, audit_key) as auditor:
        records = auditor.get("/admin/v1/audit", params={"limit": 10000}).json()["data"]
    outcome = next(x for x in records if x.get("request_id") == request_id and x["event"] == "response")
    assert outcome["pii"] == {"cn_mobile": 1}


@pytest.mark.parametrize("policy, stream", [("mask", False), ("detect", True)])
def test_a_long_prompt_and_a_long_answer_are_scanned_apart_and_every_value_counted(tmp_path, policy, stream):
    """Texts past APART_CHARS are scanned in the gateway's worker process — the prompt (mask:
    before the engine; detect: after the answer) and the answer (mask: before the client;
    detect: once it is out): the request is answered, and every value is counted."""
    from conftest import Server
    from test_supervision import wait_until

    from seekstack.governance.pii import APART_CHARS

    server = Server(tmp_path, {"pii": {"default": policy}, "models": [
        {"name": "long", "source": "embedded", "context": 131072, "engine": {"kind": "llamacpp", "simulate": True}}]})
    server.env = {"SEEKSTACK_SIM_OPTIONS": "--itl-ms 0 --output-len 12000"}  # the answer cycles the prompt's last words
    server.start()
    try:
        prompt = f"Call {PHONE} about order 1234, then write it down. " * 1000
        assert len(prompt) >= APART_CHARS
        text, _, r = chat(server.http, prompt, stream=stream, max_tokens=12000, model="long")
        assert len(text) >= APART_CHARS

        def counted() -> float:  # detect counts once the answer is out: a moment after the client has it
            lines = [line for line in server.http.get("/metrics").text.splitlines()
                     if line.startswith('seekstack_pii_detections_total{class="cn_mobile"}')]
            return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

        if policy == "mask":  # the engine saw labels, so the answer holds labels, which are not PII
            assert text.count("[CN_MOBILE]") > 1000 and wait_until(lambda: counted() == 1000, 10), counted()
        else:  # the engine saw the numbers and said them again: the prompt's and the answer's are counted
            assert text.count(PHONE) > 1000
            assert wait_until(lambda: counted() == 1000 + text.count(PHONE), 10), (counted(), text.count(PHONE))
        # the worker process leaves with the gateway: stopped (mask), or killed outright (detect)
        [worker] = [p for p in psutil.Process(server.proc.pid).children()
                    if any("spawn_main" in part for part in p.cmdline())]
        if policy == "mask":
            server.stop()
        else:
            server.proc.kill()
            server.proc.wait()
        assert wait_until(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 10), worker
    finally:
        server.stop()
