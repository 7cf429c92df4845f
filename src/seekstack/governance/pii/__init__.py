"""PII: recognizers as data, masking/tokenizing for texts and streams, and the policy choice."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from typing import Any, Iterator

from ...threads import in_worker_process, off_loop
from .masker import Entity, Redactor, StreamFilter, choose, detect, found_each

__all__ = ["Redactor", "StreamFilter", "detect", "outbound", "policy_for", "redact_prompt"]

# From this many characters (a request's texts together, or an answer) the scan runs in a worker
# process. Chinese text scans at ~1.3 µs a character here (bench/rerank.py's passages: 4 K
# characters, 5.3 ms), English prose at ~0.03 µs; the trip to the worker costs ~1.2 ms of the
# event loop's CPU. From 4 K characters the trip saves Chinese text 4 ms or more of the loop's time,
# and costs English prose at most ~1 ms.
APART_CHARS = 4 * 1024


def policy_for(pii, key_id: str, team: str, model: str) -> str:
    """The most specific setting wins: key, then team, then model, then the default."""
    return pii.keys.get(key_id) or pii.teams.get(team) or pii.models.get(model) or pii.default


async def redact_prompt(body: dict[str, Any], redactor: Redactor) -> None:
    """Apply the policy to every text a request sends to the model, in place: chat messages,
    completion prompts, embedding inputs, a rerank query and its documents. Texts of
    ``APART_CHARS`` or more in all are scanned together in a worker process (:func:`scan_each`)."""
    if redactor.policy == "off":
        return
    places = list(_texts(body))
    if sum(len(holder[key]) for holder, key in places) < APART_CHARS:
        for holder, key in places:
            holder[key] = redactor.inbound(holder[key])
        return
    chosen = await scan_each([holder[key] for holder, key in places])
    for (holder, key), entities in zip(places, chosen):
        holder[key] = redactor.inbound(holder[key], entities)


def _texts(body: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """Where each text of a request is: (its container, its key or index)."""
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield message, "content"
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part, "text"
    for field in ("prompt", "input", "query", "documents"):  # completions, embeddings, rerank
        value = body.get(field)
        if isinstance(value, str):
            yield body, field
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            yield from ((value, i) for i in range(len(value)))


async def outbound(redactor: Redactor, text: str) -> str:
    """:meth:`Redactor.outbound` of a whole answer, a long one scanned apart (:func:`scan`)."""
    if len(text) < APART_CHARS or redactor.policy in ("off", "tokenize"):
        return redactor.outbound(text)
    return redactor.outbound(text, entities=await scan(text))


async def scan_each(texts: list[str]) -> list[list[Entity]]:
    """:func:`detect` of each text, its recognizers run in a worker process, in one trip (a thread
    would not do: a scan holds the interpreter lock), so that the event loop goes on serving the
    streams in flight."""
    try:
        candidates = await in_worker_process(found_each, texts)
    except (BrokenProcessPool, OSError):  # no worker process to be had: scan here, in a thread
        candidates = await off_loop(found_each, texts)
    return [choose(text, found_in) for text, found_in in zip(texts, candidates)]


async def scan(text: str) -> list[Entity]:
    """:func:`scan_each` of one text."""
    return (await scan_each([text]))[0]
