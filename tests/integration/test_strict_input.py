"""Strict input (issue 15): every malformed body a 400 naming its field, never a 500 or 502; no engine
length parameter past max_tokens; a prompt too big refused before tokenizing; slow clients cut off."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from conftest import Server

MODEL = "smollm2-135m"
HELLO = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("body,param", [
    ({"messages": [{"role": "user", "content": [{"type": {}}]}]}, "messages.0.content.0"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages.0.content.0.text"),
    ({"messages": [{"role": "user", "content": None, "name": {"x": 1}}]}, "messages.0.name"),
    ({"messages": HELLO, "max_tokens": "4"}, "max_tokens"),
    ({"messages": HELLO, "stream": "yes"}, "stream"),
    ({"messages": HELLO, "top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ({"messages": [{"role": "assistant", "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {}}}]}]},
     "messages.0.tool_calls.0.function.arguments"),
    ({"messages": HELLO, "tools": [{"type": "function", "function": {"name": 3}}]}, "tools.0.function.name"),
    ({"messages": HELLO, "n_predict": 300, "max_tokens": 2}, "n_predict"),
    ({"messages": HELLO, "id_slot": 0}, "id_slot"),
])
def test_malformed_chat_bodies_are_400_naming_the_field(server, schema, body, param):
    with httpx.Client(base_url=server.url, headers=server.http.headers, timeout=30) as c:
        r = c.post("/v1/chat/completions", json={"model": MODEL, **body})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        schema("ErrorResponse", r.json())
        assert error["param"] == param and error["type"] == "invalid_request_error", error
        # the keep-alive connection is still good for the next request
        again = c.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 1})
        assert again.status_code == 200


def test_an_engine_length_parameter_is_refused_naming_max_tokens(server):
    r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "n_predict": 300,
                                                       "max_tokens": 2})
    assert "max_tokens" in r.json()["error"]["message"]
    ok = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 2,
                                                        "top_k": 40, "min_p": 0.05, "ignore_eos": True})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2  # the allowed extras pass


def test_completions_and_embeddings_are_strict_too(server):
    r = server.http.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": "2"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = server.http.post("/v1/completions", json={"model": MODEL, "prompt": [1, "two"]})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("prompt")
    r = server.http.post("/v1/embeddings", json={"model": "smollm2-135m-embed", "input": "Hi", "pooling": "cls"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "pooling"


def test_a_prompt_that_cannot_fit_is_refused_before_tokenizing(server):
    """7.9 MB once took 9 s of tokenizing before its 400; now the size alone decides."""
    big = "word " * 1_580_000
    started = time.monotonic()
    r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": big}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert time.monotonic() - started < 5  # a bound, not a benchmark: tokenizing took 9 s


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("slow"), {
        "server": {"header_timeout": 1, "body_timeout": 1, "max_connections": 40},
        "models": [{"name": "m", "source": "embedded", "context": 256, "slots": 1, "threads": 1}]}).start()
    yield srv
    srv.stop()


def _closed(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(65536) == b"" or True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def test_slow_headers_and_slow_bodies_are_cut_off(patient):
    host, port = "127.0.0.1", patient.port
    silent = socket.create_connection((host, port))  # connects and says nothing
    partial = socket.create_connection((host, port))
    partial.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    assert _closed(silent, 3) and _closed(partial, 3)
    body = socket.create_connection((host, port))
    body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + patient.key.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"model\"")
    body.settimeout(5)
    answer = b""
    while chunk := body.recv(65536):  # until the gateway closes the connection
        answer += chunk
    assert b" 408 " in answer.split(b"\r\n")[0] and b"request_timeout" in answer
    for s in (silent, partial, body):
        s.close()
    assert patient.http.get("/readyz").status_code == 200


def test_open_connections_are_bounded(patient):
    held = []
    try:
        for _ in range(60):
            held.append(socket.create_connection(("127.0.0.1", patient.port)))
        time.sleep(0.3)
        closed = sum(_closed(s, 0.2) for s in held)
        assert closed >= 60 - 40, closed  # past max_connections, closed at once
    finally:
        for s in held:
            s.close()
    time.sleep(1.5)
    assert patient.http.get("/readyz").status_code == 200


def test_a_grammar_cannot_forge_engine_log_lines(server):
    """llama.cpp writes a grammar it cannot parse into its log line by line: only one-line grammars pass."""
    r = server.http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": HELLO, "max_tokens": 2,
        "grammar": 'root ::= x\n2026-11-29 00:00:00 I srv  all fine "patient Zhang"'})
    assert r.status_code == 400 and r.json()["error"]["param"] == "grammar" and "one line" in r.json()["error"]["message"]
    ok = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 4,
                                                        "grammar": 'root ::= "fine"'})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "fine"
