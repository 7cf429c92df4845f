"""Assembling a streamed engine answer into its non-streamed form (gateway/assemble.py)."""

import json

import pytest

from seekstack.errors import ContextLengthError, EngineError
from seekstack.config import ModelConfig
from seekstack.engines.http import EngineHTTP
from seekstack.engines.llamacpp import LlamaCppBackend
from seekstack.gateway.assemble import Assembler


def llamacpp() -> LlamaCppBackend:
    """The dialect only: nothing is sent."""
    return LlamaCppBackend(EngineHTTP(read_timeout=1), "unix:///nonexistent.sock", ModelConfig(name="m", source="embedded"))


def events(*chunks) -> list[bytes]:
    return [b"data: " + (c if isinstance(c, bytes) else json.dumps(c).encode()) for c in chunks] + [b"data: [DONE]"]


def feed(kind: str, raw: list[bytes]) -> dict:
    assembler = Assembler(kind, llamacpp())
    for event in raw:
        assembler.event(event)
    return assembler.result()


HEAD = {"id": "chatcmpl-1", "created": 1, "model": "engine-id", "object": "chat.completion.chunk"}


def test_chat_parts_are_joined_per_choice_and_usage_is_kept():
    result = feed("chat", [b": keep-alive", *events(
        {**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {"reasoning_content": "Think"}, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {"reasoning_content": "ing."}, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**HEAD, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}},
    )])
    assert result == {
        "id": "chatcmpl-1", "created": 1, "model": "engine-id", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": "Hello", "reasoning_content": "Thinking."}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}


def test_tool_call_fragments_are_merged_by_index():
    def call(index, **fields):
        return {**HEAD, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, **fields}]}, "finish_reason": None}]}

    result = feed("chat", events(
        call(0, id="call_a", type="function", function={"name": "get_", "arguments": ""}),
        call(0, function={"name": "weather", "arguments": '{"city":'}),
        call(1, id="call_b", type="function", function={"name": "now", "arguments": "{}"}),
        call(0, function={"arguments": '"Hangzhou"}'}),
        {**HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ))
    message = result["choices"][0]["message"]
    assert message["content"] is None and result["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Hangzhou"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": "{}"}}]


def test_completion_text_and_logprobs_are_joined():
    result = feed("completion", events(
        {"id": "cmpl-1", "choices": [{"index": 0, "text": "Once", "logprobs": {"content": [{"token": "Once"}]}}]},
        {"id": "cmpl-1", "choices": [{"index": 0, "text": " upon", "logprobs": {"content": [{"token": " upon"}]}}]},
        {"id": "cmpl-1", "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
         "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}},
    ))
    assert result["object"] == "text_completion"
    assert result["choices"] == [{"index": 0, "finish_reason": "length", "text": "Once upon",
                                  "logprobs": {"content": [{"token": "Once"}, {"token": " upon"}]}}]
    assert result["usage"]["total_tokens"] == 4


def test_an_error_event_becomes_the_engines_error():
    assembler = Assembler("chat", llamacpp())
    with pytest.raises(ContextLengthError):
        assembler.event(b'data: {"error": {"type": "exceed_context_size_error", "message": "too long", '
                        b'"n_prompt_tokens": 3000, "n_ctx": 1024}}')


def test_an_answer_without_its_end_is_refused_not_passed_off_as_whole():
    assembler = Assembler("chat", llamacpp())
    assembler.event(b"data: " + json.dumps({**HEAD, "choices": [{"index": 0, "delta": {"content": "Hal"}}]}).encode())
    with pytest.raises(EngineError, match="ended its answer early"):
        assembler.result()


def test_a_batched_completions_stream_gives_a_choice_per_prompt_and_their_summed_usage():
    """llama.cpp's shape for `prompt: [a, b]`: `data: null` first, then each prompt's chunks by
    index, each prompt's usage on its own last chunk."""
    head = {"id": "chatcmpl-2", "created": 1, "model": "engine-id", "object": "text_completion"}
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6, "prompt_tokens_details": {"cached_tokens": 1}}
    result = feed("completion", events(
        b"null",
        {**head, "choices": [{"index": 0, "text": "a", "finish_reason": None}]},
        {**head, "choices": [{"index": 1, "text": "b", "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "text": "c", "finish_reason": "length"}], "usage": usage},
        {**head, "choices": [{"index": 1, "text": "d", "finish_reason": "length"}], "usage": {**usage, "prompt_tokens": 5, "total_tokens": 7}},
    ))
    assert [(c["index"], c["text"], c["finish_reason"]) for c in result["choices"]] == [(0, "ac", "length"), (1, "bd", "length")]
    assert result["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13,
                               "prompt_tokens_details": {"cached_tokens": 2},
                               "completion_tokens_details": {"reasoning_tokens": 0}}
