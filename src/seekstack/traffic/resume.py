"""Go on with a broken stream on another endpoint, so that the client sees one stream.

While a stream is relayed, :class:`Continuation` keeps the text the engine has produced so far
(as the engine wrote it: a DeepSeek-R1 answer's ``</think>`` included) and how many tokens that
was. When the engine's connection breaks, :meth:`Continuation.request` is the request that goes
on from there on another endpoint:

- chat — the messages plus the text so far as a final assistant message, which the engine
  continues instead of starting a new turn (``Capabilities.resumes``: vLLM and SGLang's
  ``continue_final_message``, llama.cpp's assistant prefill, the simulator's both);
- completions — the prompt with the text so far appended (every engine continues a prompt);
- and in both, ``max_tokens`` less what was already produced.

The resumed leg's chunks are then made to look like the first leg's (:meth:`Continuation.adopt`):
the same ``id``, no second ``role`` chunk, and usage counted once — the prompt as the client
sent it, the completion as every token the client got.

Not resumed (the stream ends with an error event, as before): a request for several choices
(``n`` > 1), tool calls, a prompt of token ids, and — on engines that split reasoning
themselves — a stream that has already sent text, since their reasoning parser would read the
continuation as a new answer.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from ..engines.backend import Kind

CONTINUE_FINAL_MESSAGE, PREFILL = "continue_final_message", "prefill"


class Continuation:
    def __init__(self, kind: Kind, body: dict[str, Any], resumes: str | None, native_reasoning: bool):
        self.kind = kind
        self.body = copy.deepcopy(body)     # the request as first sent (the engine's body is reused)
        self.resumes = resumes
        self.native_reasoning = native_reasoning
        self.pieces: list[str] = []
        self.tokens = 0                     # token chunks relayed, over every leg
        self.resumed = 0                    # legs after the first
        self.id: bytes | None = None        # the first leg's `"id":"…"`
        self.finish_reason: str | None = None
        self.why_not = self._why_not(body)  # None: resumable so far

    def _why_not(self, body: dict[str, Any]) -> str | None:
        if self.kind == "chat" and self.resumes is None:
            return "this engine does not continue a final assistant message"
        if self.kind not in ("chat", "completion"):
            return "only chat and completions streams are resumed"
        if (body.get("n") or 1) > 1:
            return "a request for several choices is not resumed"
        if body.get("tools") or body.get("functions"):
            return "a request with tools is not resumed"
        if self.kind == "completion" and not isinstance(body.get("prompt"), str):
            return "only a completions prompt that is one string is resumed"
        return None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    # ------------------------------------------------------------ while relaying

    def observe(self, event: bytes) -> None:
        """One SSE event of the current leg, as the engine sent it (before shaping)."""
        if self.why_not is not None or not event.startswith(b"data:"):
            return
        payload = event[5:].strip()
        if payload == b"[DONE]" or not payload.startswith(b"{"):
            return
        chunk = orjson.loads(payload)
        if self.id is None and isinstance(chunk.get("id"), str):
            self.id = b'"id":' + orjson.dumps(chunk["id"])
        for choice in chunk.get("choices") or ():
            holder = choice.get("delta") or {} if self.kind == "chat" else choice
            if holder.get("tool_calls"):
                self.why_not = "a stream that calls tools is not resumed"
            piece = holder.get("content") if self.kind == "chat" else holder.get("text")
            reasoning = holder.get("reasoning_content") or holder.get("reasoning")
            if reasoning and self.native_reasoning:
                self.why_not = "the engine splits reasoning itself: a stream that has sent some is not resumed"
            if piece:
                self.pieces.append(piece)
            if piece or reasoning:
                self.tokens += 1
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    # ------------------------------------------------------------ at a break

    def remaining(self) -> int | None:
        """Tokens the client may still get (None: no limit was asked)."""
        limit = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        return None if limit is None else max(int(limit) - self.tokens, 0)

    def request(self) -> dict[str, Any] | None:
        """The request that goes on from here; None when this stream cannot be resumed.

        When the break came after the last token the client asked for, the new leg asks for one
        token and only its end is kept: the finish and the usage the engine counted."""
        if self.why_not is None and self.native_reasoning and self.tokens:
            self.why_not = "the engine splits reasoning itself: a stream that has sent some is not resumed"
        if self.why_not is not None:
            return None
        body = copy.deepcopy(self.body)
        text = self.text
        if text:
            if self.kind == "completion":
                body["prompt"] = body["prompt"] + text
            else:
                body["messages"] = [*body["messages"], {"role": "assistant", "content": text}]
                if self.resumes == CONTINUE_FINAL_MESSAGE:
                    body["continue_final_message"], body["add_generation_prompt"] = True, False
        left = self.remaining()
        self.spent = left == 0
        if left is not None:
            body.pop("max_completion_tokens", None)
            body["max_tokens"] = max(left, 1)
        self.resumed += 1
        self.before_leg = self.tokens
        return body

    spent = False       # the client had every token it asked for when the stream broke
    before_leg = 0      # tokens the client had when the current leg started

    def adopt(self, event: bytes) -> bytes | None:
        """An event of a resumed leg, made to continue the first leg's stream (None: drop it)."""
        if not event.startswith(b"data:"):
            return event
        payload = event[5:].strip()
        if payload == b"[DONE]" or not payload.startswith(b"{"):
            return event
        chunk = orjson.loads(payload)
        if self.id is not None:
            chunk["id"] = orjson.loads(b"{" + self.id + b"}")["id"]
        for choice in chunk.get("choices") or ():
            holder = choice.get("delta") or {} if self.kind == "chat" else choice
            if self.kind == "chat":
                holder.pop("role", None)
            if self.spent:
                for name in ("content", "text", "reasoning_content", "reasoning"):
                    if holder.get(name):
                        holder[name] = ""
                if choice.get("finish_reason"):
                    choice["finish_reason"] = "length"
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            completion = 0 if self.spent else int(usage.get("completion_tokens") or 0)
            usage["prompt_tokens"] = max(int(usage.get("prompt_tokens") or 0) - self.before_leg, 0)
            usage["completion_tokens"] = self.before_leg + completion
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if self.kind == "chat" and not usage and not any(
                c.get("finish_reason") or any((c.get("delta") or {}).values()) for c in chunk.get("choices") or ()):
            return None  # nothing left to say: the new leg's opening role chunk, or a spent token
        return b"data: " + orjson.dumps(chunk)
