"""PII: recognizers as data, masking/tokenizing for texts and streams, and the policy choice."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ...threads import in_worker_process, off_loop
from .masker import Entity, Redactor, StreamFilter, choose, detect, found

__all__ = ["Redactor", "StreamFilter", "detect", "outbound", "policy_for", "redact_prompt"]

# From this many characters a text is scanned in a worker process: at ~0.3 ms a KB of
# figure-dense text (bench/pii_scaling.py), 32 K characters are 10-30 ms of the event loop's time.
APART_CHARS = 32 * 1024


def policy_for(pii, key_id: str, team: str, model: str) -> str:
    """The most specific setting wins: key, then team, then model, then the default."""
    return pii.keys.get(key_id) or pii.teams.get(team) or pii.models.get(model) or pii.default


async def redact_prompt(body: dict[str, Any], redactor: Redactor) -> None:
    """Apply the policy to every text a request sends to the model, in place."""
    if redactor.policy == "off":
        return
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = await inbound(redactor, content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = await inbound(redactor, part["text"])
    for field in ("prompt", "input", "query", "documents"):  # completions, embeddings, rerank
        value = body.get(field)
        if isinstance(value, str):
            body[field] = await inbound(redactor, value)
        elif isinstance(value, list) and value and all(isinstance(p, str) for p in value):
            body[field] = [await inbound(redactor, p) for p in value]


async def inbound(redactor: Redactor, text: str) -> str:
    """:meth:`Redactor.inbound`, a long text scanned apart (:func:`scan`)."""
    if len(text) < APART_CHARS or redactor.policy == "off":
        return redactor.inbound(text)
    return redactor.inbound(text, await scan(text))


async def outbound(redactor: Redactor, text: str) -> str:
    """:meth:`Redactor.outbound` of a whole answer, a long one scanned apart (:func:`scan`)."""
    if len(text) < APART_CHARS or redactor.policy in ("off", "tokenize"):
        return redactor.outbound(text)
    return redactor.outbound(text, entities=await scan(text))


async def scan(text: str) -> list[Entity]:
    """:func:`detect`, its recognizers run in a worker process (a thread would not do: a scan
    holds the interpreter lock), so that the event loop goes on serving the streams in flight."""
    try:
        candidates = await in_worker_process(found, text)
    except (BrokenProcessPool, OSError):  # no worker process to be had: scan here, in a thread
        candidates = await off_loop(found, text)
    return choose(text, candidates)
