"""Model fallbacks: another model answers when the one asked for cannot take a request.

A model's ``fallbacks`` (config) are other models of the config, tried in order when it fails a
request for one of the reasons in its ``fallback_on`` before the client got anything:

- ``unavailable``: no endpoint takes requests (down, ejected, unloaded), or each one tried failed
  before answering (503);
- ``overloaded``: its queue is full, or the wait too long (429);
- ``context_length``: the prompt and ``max_tokens`` do not fit its context (400).

A fallback is tried only if the caller's key may use it; it is passed over when it cannot take the
request either — for any of the three reasons, or because it does not serve what was asked
(a media part, say). A fallback's own fallbacks are not followed. When none answers, the client
gets the first model's own error, naming what was tried. What happened is data here; the
inference service (gateway/inference.py) runs the request again for the next model.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import ContextLengthError, EngineUnavailableError, OverloadedError, UnsupportedError

# The errors of the model asked for that its fallbacks may answer instead, by reason.
REASONS: tuple[tuple[type[Exception], str], ...] = (
    (EngineUnavailableError, "unavailable"), (OverloadedError, "overloaded"), (ContextLengthError, "context_length"))
TRIGGERS = tuple(kind for kind, _ in REASONS)
# What makes a fallback pass its turn to the next: the same, or a request it does not serve.
PASSES = (*TRIGGERS, UnsupportedError)


def reason(exc: Exception) -> str:
    """Why a model could not take a request (``exc`` is one of :data:`PASSES`)."""
    return next((name for kind, name in REASONS if isinstance(exc, kind)), "unsupported")


class Skipped(NamedTuple):
    model: str
    why: str


def tried_text(skipped: list[Skipped]) -> str:
    """``; fallbacks tried: b (unavailable), c (context_length)`` — for the error message."""
    return "; fallbacks tried: " + ", ".join(f"{s.model} ({s.why})" for s in skipped) if skipped else ""
