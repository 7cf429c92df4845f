"""What one request used, filled in by the inference service and read when the request ends
(by the audit record, quotas and usage accounting, and metrics)."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

log = logging.getLogger("seekstack.governance")


@dataclass
class Meter:
    model: str | None = None
    started: float = 0.0                 # time.monotonic() at arrival
    replica: str | None = None           # index of the replica that answered
    first_token_at: float = 0.0          # streams: monotonic time of the first and last token sent
    last_token_at: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0          # of the prompt, taken from the engine's prefix cache (where it says)
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    pii: dict[str, int] = field(default_factory=dict)  # class → count found; never values
    capture: bool = False                # keep the bodies (audit.capture_bodies): encrypted, never logged
    request_body: dict[str, Any] | None = None
    response_parts: list[str] = field(default_factory=list)
    # Accounting that changes nothing the client gets (counting PII under `detect`), left for
    # after the answer so that it is not on the way to the first token; run by run_after().
    after: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)
    fallback_from: str | None = None     # the model asked for, when a fallback answered (traffic/fallbacks.py)
    # The first attempt's PII findings (counts, and the deferred counting under `detect`), set
    # aside by rewind(): the request's record if no fallback answers either (keep_first()).
    first_attempt: tuple[dict[str, int], list[Callable[[], Awaitable[None] | None]]] | None = None

    def rewind(self, deferred: int) -> None:
        """Forget what an attempt for one model noted (the work it left for after the answer:
        past the first ``deferred``), before the request runs again for a fallback. The first
        attempt's PII findings are set aside, not lost."""
        if self.first_attempt is None:
            self.first_attempt = (self.pii, self.after[deferred:])
        self.model = self.replica = self.request_body = None
        self.pii = {}
        self.response_parts.clear()
        del self.after[deferred:]

    def keep_first(self) -> None:
        """No model answered: the request's record carries what its first attempt found in the
        prompt (the client gets that model's error)."""
        if self.first_attempt is not None:
            self.pii, deferred = self.first_attempt
            self.after.extend(deferred)

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        self.cached_tokens = int(usage.get("prompt_cache_hit_tokens")
                                 or (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        self.completion_tokens = int(usage.get("completion_tokens") or 0)
        details = usage.get("completion_tokens_details") or {}
        self.reasoning_tokens = int(details.get("reasoning_tokens") or 0)

    async def run_after(self) -> None:
        """Run the work left for after the answer; the request has been served, so a failure is logged, not raised."""
        work, self.after = self.after, []
        for step in work:
            try:
                done = step()
                if inspect.isawaitable(done):
                    await done
            except Exception as exc:  # the type only: an exception's text may quote the prompt
                log.error("accounting after the answer failed (%s in %s)", type(exc).__name__, step.__qualname__)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
