"""Models taking turns in memory: which loaded models give up their room to one that does not fit.

The decision alone, as data in and data out. :class:`~seekstack.traffic.keep_alive.KeepAlive`
gathers the facts (the memory plan, what each model holds, how long each has been idle) and
acts on the answer (unloads, waits, or refuses).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Holder:
    """A loaded model that may give its room: it has a keep_alive."""
    model: str
    bytes: float
    idle_s: float | None  # None: it may not give room now (busy, loading, or already being unloaded)


def choose(holders: list[Holder], short: float) -> list[Holder] | None:
    """The holders to unload so that ``short`` more bytes fit: the least recently used idle ones,
    as few as cover it. [] when nothing is short; None when the idle ones cannot cover it now
    (busy ones may later)."""
    if short <= 0:
        return []
    chosen, freed = [], 0.0
    for holder in sorted((h for h in holders if h.idle_s is not None), key=lambda h: h.idle_s, reverse=True):
        chosen.append(holder)
        freed += holder.bytes
        if freed >= short:
            return chosen
    return None


def hopeless(holders: list[Holder], short: float) -> bool:
    """Even with every holder unloaded, busy or not, it would not fit: waiting cannot help."""
    return short > 0 and sum(h.bytes for h in holders) < short
