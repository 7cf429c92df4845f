"""Continuation (traffic/resume.py): what a broken stream goes on with, and how the resumed leg
is made to continue the first."""

from __future__ import annotations

import orjson

from seekstack.traffic.resume import Continuation


def chunk(text: str | None = None, finish: str | None = None, ident: str = "first", role: bool = False, **extra) -> bytes:
    delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
    return b"data: " + orjson.dumps({"id": ident, "object": "chat.completion.chunk", "model": "m",
                                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "stream": True}


def test_a_chat_goes_on_as_a_final_assistant_message_with_what_is_left_of_the_budget():
    c = Continuation("chat", BODY, "continue_final_message", native_reasoning=False)
    for event in (chunk(role=True), chunk("Hello"), chunk(" there")):
        c.observe(event)
    body = c.request()
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello there"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["max_tokens"] == 8 and BODY["max_tokens"] == 10  # the client's request is left as it was
    prefill = Continuation("chat", BODY, "prefill", native_reasoning=False)
    prefill.observe(chunk("Hello"))
    assert "continue_final_message" not in prefill.request()  # llama.cpp continues a trailing assistant message itself


def test_the_resumed_leg_keeps_the_first_legs_id_sends_no_second_role_and_counts_usage_once():
    c = Continuation("chat", BODY, "continue_final_message", native_reasoning=False)
    for event in (chunk(role=True), chunk("Hello"), chunk(" there")):
        c.observe(event)
    c.request()
    assert c.adopt(chunk(role=True, ident="second")) is None
    out = orjson.loads(c.adopt(chunk(" friend", ident="second"))[6:])
    assert out["id"] == "first" and out["choices"][0]["delta"] == {"content": " friend"}
    # the engine counted the text so far as prompt: it is the client's completion
    usage = orjson.loads(c.adopt(b"data: " + orjson.dumps({"id": "second", "choices": [], "usage": {
        "prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}))[6:])["usage"]
    assert usage == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    assert c.adopt(b"data: [DONE]") == b"data: [DONE]"


def test_a_completion_goes_on_from_its_prompt_and_text():
    c = Continuation("completion", {"prompt": "Once", "max_tokens": 5}, None, native_reasoning=False)
    c.observe(b'data: {"id":"c1","choices":[{"index":0,"text":" upon","finish_reason":null}]}')
    assert c.request() == {"prompt": "Once upon", "max_tokens": 4}


def test_a_break_after_the_last_token_asks_for_only_the_end():
    c = Continuation("chat", {**BODY, "max_tokens": 2}, "prefill", native_reasoning=False)
    for event in (chunk("a"), chunk(" b")):
        c.observe(event)
    assert c.request()["max_tokens"] == 1 and c.spent
    assert c.adopt(chunk(" c", ident="x")) is None  # the one token asked for is not the client's
    end = orjson.loads(c.adopt(chunk(finish="stop", ident="x"))[6:])
    assert end["choices"][0]["finish_reason"] == "length"
    usage = orjson.loads(c.adopt(b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1}}')[6:])["usage"]
    assert usage["completion_tokens"] == 2 and usage["prompt_tokens"] == 7


def test_what_is_not_resumed_says_why():
    assert Continuation("chat", {**BODY, "n": 2}, "prefill", False).request() is None
    assert "tools" in Continuation("chat", {**BODY, "tools": [{}]}, "prefill", False).why_not
    assert "does not continue" in Continuation("chat", BODY, None, False).why_not
    assert "one string" in Continuation("completion", {"prompt": [1, 2]}, None, False).why_not
    native = Continuation("chat", BODY, "continue_final_message", native_reasoning=True)
    assert native.request() is not None  # nothing sent yet: it can start again
    native.observe(b"data: " + orjson.dumps({"id": "r", "choices": [{"index": 0, "delta": {"reasoning_content": "Hm"}}]}))
    assert native.request() is None and "splits reasoning" in native.why_not
