"""Assemble a streamed engine answer into the engine's non-streamed form.

llama.cpp notices a client that left only while streaming (a write fails); for a
non-streamed request it polls the socket only when idle, so under load a long answer runs
on for nobody. For such engines (``Capabilities.cancels_only_streams``) the gateway asks for
a stream even when its client did not, and assembles the events here: closing the stream
then stops the engine at its next token, busy or not.

The result has the shape the engine would have answered without streaming, so the usual
non-streamed shaping, PII and metering apply to it unchanged.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import EngineError

if TYPE_CHECKING:
    from ..engines.backend import Backend
from .shaping import UsageTally
from .upstream import Lease


async def assemble(lease: Lease, kind: str) -> dict[str, Any]:
    """Read a streamed answer to its end and return it in non-streamed form."""
    assembler = Assembler(kind, lease.replica.backend)
    async with aclosing(lease.events()) as batches:
        async for events in batches:
            for event in events:
                assembler.event(event)
    return assembler.result()


class Assembler:
    """Feed raw SSE events (without their blank-line terminator); then :meth:`result`."""

    def __init__(self, kind: str, backend: "Backend"):
        self.kind = kind  # "chat" | "completion"
        self.backend = backend  # its dialect: normalize chunks, translate an error event
        self.head: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self._tally = UsageTally()
        self.finished = False

    def event(self, raw: bytes) -> None:
        if not raw.startswith(b"data:"):
            return  # comments / keep-alive pings
        payload = raw[5:].strip()
        if payload == b"[DONE]":
            self.finished = True
            return
        chunk = orjson.loads(payload)
        if not isinstance(chunk, dict):
            return  # llama.cpp opens a batched completions stream with `data: null`
        if "error" in chunk:
            raise self.backend.translate_error(500, payload)
        chunk = self.backend.normalize(chunk)
        if not self.head:
            self.head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        if chunk.get("usage"):
            self.usage = self._tally.add(chunk)
        for choice in chunk.get("choices") or []:
            self._add(choice)

    def _add(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        into = self.choices.get(index)
        if into is None:
            into = self.choices[index] = {"index": index, "finish_reason": None, "logprobs": None,
                                          "parts": {}, "tool_calls": {}}
        if choice.get("finish_reason") is not None:
            into["finish_reason"] = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if logprobs:
            into["logprobs"] = _merge_logprobs(into["logprobs"], logprobs)
        delta = choice.get("delta") or {} if self.kind == "chat" else {"text": choice.get("text")}
        for name in ("content", "reasoning_content", "text"):
            if isinstance(delta.get(name), str):
                into["parts"].setdefault(name, []).append(delta[name])
        for call in delta.get("tool_calls") or []:
            slot = into["tool_calls"].setdefault(call.get("index", 0), {"id": None, "type": "function",
                                                                        "function": {"name": "", "arguments": ""}})
            if call.get("id"):
                slot["id"] = call["id"]
            if call.get("type"):
                slot["type"] = call["type"]
            function = call.get("function") or {}
            slot["function"]["name"] += function.get("name") or ""
            slot["function"]["arguments"] += function.get("arguments") or ""

    def result(self) -> dict[str, Any]:
        if not self.finished:
            raise EngineError("the engine ended its answer early")
        choices = []
        for index in sorted(self.choices):
            c = self.choices[index]
            text = {name: "".join(parts) for name, parts in c["parts"].items()}
            out: dict[str, Any] = {"index": index, "finish_reason": c["finish_reason"], "logprobs": c["logprobs"]}
            if self.kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": text.get("content")}
                if "reasoning_content" in text:
                    message["reasoning_content"] = text["reasoning_content"]
                if c["tool_calls"]:
                    message["tool_calls"] = [c["tool_calls"][i] for i in sorted(c["tool_calls"])]
                out["message"] = message
            else:
                out["text"] = text.get("text", "")
            choices.append(out)
        return {**self.head, "object": "chat.completion" if self.kind == "chat" else "text_completion",
                "choices": choices, "usage": self.usage}


def _merge_logprobs(into: dict[str, Any] | None, more: dict[str, Any]) -> dict[str, Any]:
    """Chat logprobs are lists under ``content``; completion logprobs are parallel lists."""
    if into is None:
        return {k: list(v) if isinstance(v, list) else v for k, v in more.items()}
    for key, value in more.items():
        if isinstance(value, list):
            into.setdefault(key, []).extend(value)
    return into
