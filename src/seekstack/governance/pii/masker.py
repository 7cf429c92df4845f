"""Find PII, and mask it, tokenize it (reversibly) or restore it — whole texts and streams.

Policies: ``off`` | ``detect`` (count classes, change nothing) | ``mask`` (irreversible:
``[CN_MOBILE]``) | ``tokenize`` (``[CN_MOBILE_1]`` goes to the model, the value comes back
in the response).

Streams are handled by :class:`StreamFilter`: it holds back only the trailing characters
that some recognizer could still complete (a partial match that reaches the end of what
has arrived) or that could be part of a placeholder (an open ``[``), and lets everything
before them through at once.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from .recognizers import CONTEXT_WINDOW, RECOGNIZERS, VETO, candidates, normalize

PRIORITY = {r.name: min(0 if x.checksum else 1 if x.context or x.validate else 2 for x in RECOGNIZERS if x.name == r.name)
            for r in RECOGNIZERS}
MAX_HOLD = 64     # never hold back more than this many characters
MAX_CHOSEN = 256  # values a stream remembers, to mask where they recur
GROW_SLACK = 6    # a complete match this close to the end may still grow
_OPEN_PLACEHOLDER = re.compile(r"\[[A-Z0-9_]*$")
_DIGIT = re.compile("[0-9]")


@dataclass(frozen=True)
class Entity:
    start: int
    end: int
    cls: str
    value: str


def detect(text: str) -> list[Entity]:
    """Non-overlapping entities, left to right; on overlap the validated / longer one wins.

    Matched on the normalized text (full-width forms and dashes folded, one character for one);
    values are cut from the original. Nothing inside a hash or a UUID counts. Linear in the
    text: every overlap check is a lookup in sorted spans (a 64 KB report with its hotline on
    every page took 5.9 s when each check walked every span chosen before it)."""
    return choose(text, found(text))


def found(text: str) -> list[Entity]:
    """Every recognizer's matches, outside hashes and UUIDs, overlapping or not."""
    norm = normalize(text)
    lowered, has_digit = norm.lower(), _DIGIT.search(norm) is not None
    vetoed = _Spans()
    for m in VETO.finditer(norm) if has_digit else ():
        vetoed.claim(*m.span())
    return [Entity(s, e, r.name, text[s:e]) for r in candidates(norm, lowered, has_digit)
            if r.pattern.search(norm) is not None  # most find nothing: one C call says so
            for s, e, _ in r.find(norm) if vetoed.free(s, e)]


def found_each(texts: list[str]) -> list[list[Entity]]:
    """:func:`found` of each text (one call: one trip to a worker process for many texts)."""
    return [found(text) for text in texts]


def choose(text: str, entities: list[Entity]) -> list[Entity]:
    """By priority, the longest, the leftmost, those that overlap nothing chosen before; then
    every recurrence of a chosen value (say, a name found after 患者) that overlaps nothing."""
    taken = _Spans()
    chosen = [e for e in sorted(entities, key=lambda x: (PRIORITY[x.cls], -(x.end - x.start), x.start))
              if taken.claim(e.start, e.end)]
    first: dict[str, str] = {}  # each value once, in the order chosen, as the class it was first chosen as
    for entity in chosen:
        first.setdefault(entity.value, entity.cls)
    for value, cls in first.items():
        at = text.find(value)
        while at >= 0:
            if taken.claim(at, at + len(value)):
                chosen.append(Entity(at, at + len(value), cls, value))
            at = text.find(value, at + 1)
    return sorted(chosen, key=lambda x: x.start)


class _Spans:
    """Non-overlapping [start, end) spans, kept sorted: whether a span is free is a bisection."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def free(self, start: int, end: int) -> bool:
        return self._slot(start, end) is not None

    def claim(self, start: int, end: int) -> bool:
        """Take the span if it is free; say whether it was."""
        i = self._slot(start, end)
        if i is None:
            return False
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        return True

    def _slot(self, start: int, end: int) -> int | None:
        """Where the span would go among those taken; None if it overlaps one."""
        i = bisect.bisect_right(self.starts, start)
        if (i and self.ends[i - 1] > start) or (i < len(self.starts) and self.starts[i] < end):
            return None
        return i


def _label(cls: str) -> str:
    return next(r.label for r in RECOGNIZERS if r.name == cls)


@dataclass
class Vault:
    """One request's reversible placeholders: ``[CN_MOBILE_1]`` ↔ the value."""

    by_value: dict[str, str] = field(default_factory=dict)
    by_token: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def token(self, entity: Entity) -> str:
        if entity.value not in self.by_value:
            label = _label(entity.cls)
            self.counts[label] = self.counts.get(label, 0) + 1
            token = f"[{label}_{self.counts[label]}]"
            self.by_value[entity.value], self.by_token[token] = token, entity.value
        return self.by_value[entity.value]

    def restore(self, text: str) -> str:
        if "[" not in text or not self.by_token:
            return text
        return re.sub(r"\[[A-Z0-9_]+_[0-9]+\]", lambda m: self.by_token.get(m.group(0), m.group(0)), text)


class Redactor:
    """Applies one policy to texts and counts what it found (classes only, never values)."""

    def __init__(self, policy: str):
        self.policy = policy
        self.found: dict[str, int] = {}
        self.vault = Vault()

    def _count(self, entities: list[Entity]) -> None:
        for e in entities:
            self.found[e.cls] = self.found.get(e.cls, 0) + 1

    def inbound(self, text: str, entities: list[Entity] | None = None) -> str:
        """A prompt on its way to the model (``entities``: what :func:`detect` found in it, if known)."""
        if self.policy == "off" or not text:
            return text
        entities = detect(text) if entities is None else entities
        self._count(entities)
        if self.policy == "detect" or not entities:
            return text
        return self._replace(text, entities, tokenize=self.policy == "tokenize")

    def outbound(self, text: str, context: str = "", entities: list[Entity] | None = None) -> str:
        """Model output on its way to the client. ``context``: text just before, for context words;
        ``entities``: what :func:`detect` found in ``context + text``, if known."""
        if self.policy == "off" or not text:
            return text
        if self.policy == "tokenize":
            return self.vault.restore(text)
        # Entities that began in the context (already sent) are cut at the boundary: the rest is masked.
        entities = [Entity(max(e.start - len(context), 0), e.end - len(context), e.cls, e.value)
                    for e in (detect(context + text) if entities is None else entities) if e.end > len(context)]
        self._count(entities)
        if self.policy == "detect" or not entities:
            return text
        return self._replace(text, entities, tokenize=False)

    def _replace(self, text: str, entities: list[Entity], tokenize: bool) -> str:
        out, last = [], 0
        for e in entities:
            out.append(text[last:e.start])
            out.append(self.vault.token(e) if tokenize else f"[{_label(e.cls)}]")
            last = e.end
        out.append(text[last:])
        return "".join(out)


class StreamFilter:
    """:meth:`Redactor.outbound` for a stream of text pieces; holds back only what it must."""

    def __init__(self, redactor: Redactor):
        self.redactor = redactor
        self.pending = ""
        self.context = ""
        # Values chosen so far, by class: PII wherever they recur ("found once, PII wherever it
        # recurs"), also past the context window (a name found after 患者, said again later).
        self.chosen: dict[str, str] = {}

    def feed(self, piece: str) -> str:
        if self.redactor.policy == "off":
            return piece
        self.pending += piece
        hold = self._hold(self.pending)
        ready, self.pending = self.pending[:len(self.pending) - hold], self.pending[len(self.pending) - hold:]
        out = self._emit(ready)
        return piece if self.redactor.policy == "detect" else out  # detect only counts: nothing waits

    def finish(self) -> str:
        ready, self.pending = self.pending, ""
        out = self._emit(ready)
        return "" if self.redactor.policy == "detect" else out

    def _hold(self, text: str) -> int:
        if self.redactor.policy == "tokenize":
            m = _OPEN_PLACEHOLDER.search(text)
            return len(m.group(0)) if m else 0
        # Hold from the earliest place where some recognizer has a match near the end: a partial
        # one (the entity may go on in the next piece) or a complete one that ends within
        # GROW_SLACK characters of the end (an optional part may still follow: "路1号" + "3栋",
        # a card's last digit group).
        window = max(0, len(text) - MAX_HOLD)
        start = len(text)
        for value in self.chosen:  # the start of a value chosen before: it may be completed next
            k = next((k for k in range(min(len(value) - 1, len(text)), 0, -1) if text.endswith(value[:k])), 0)
            start = min(start, len(text) - k)
        text = normalize(text)
        for recognizer in RECOGNIZERS:
            for m in recognizer.partial.finditer(text, window, partial=True):
                if m.end() >= len(text) - GROW_SLACK and m.start() < start:
                    start = m.start()
        return len(text) - start

    def _emit(self, ready: str) -> str:
        if not ready:
            return ""
        if self.redactor.policy == "tokenize":
            return self.redactor.outbound(ready)  # placeholders back to their values: nothing to find
        whole = self.context + ready
        entities = detect(whole)
        taken = _Spans()
        for e in entities:
            taken.claim(e.start, e.end)
        for value, cls in self.chosen.items():  # recurrences of values chosen in earlier pieces
            at = whole.find(value)
            while at >= 0:
                if at + len(value) > len(self.context) and taken.claim(at, at + len(value)):
                    entities.append(Entity(at, at + len(value), cls, value))
                at = whole.find(value, at + 1)
        entities.sort(key=lambda e: e.start)
        for e in entities:
            if e.end > len(self.context) and len(self.chosen) < MAX_CHOSEN:
                self.chosen.setdefault(e.value, e.cls)
        out = self.redactor.outbound(ready, self.context, entities)
        self.context = whole[-CONTEXT_WINDOW:]
        return out
