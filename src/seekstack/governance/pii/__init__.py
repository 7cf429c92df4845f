"""PII: recognizers as data, masking/tokenizing for texts and streams, and the policy choice."""

from __future__ import annotations

from typing import Any

from .masker import Redactor, StreamFilter, detect

__all__ = ["Redactor", "StreamFilter", "detect", "policy_for", "redact_prompt"]


def policy_for(pii, key_id: str, team: str, model: str) -> str:
    """The most specific setting wins: key, then team, then model, then the default."""
    return pii.keys.get(key_id) or pii.teams.get(team) or pii.models.get(model) or pii.default


def redact_prompt(body: dict[str, Any], redactor: Redactor) -> None:
    """Apply the policy to every text a request sends to the model, in place."""
    if redactor.policy == "off":
        return
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = redactor.inbound(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = redactor.inbound(part["text"])
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        body["prompt"] = redactor.inbound(prompt)
    elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        body["prompt"] = [redactor.inbound(p) for p in prompt]
