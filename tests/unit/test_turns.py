"""Which models give their room (traffic/turns.py): the least recently used idle ones, as few as
cover the shortfall; none while busy ones are needed; nothing when it fits."""

from __future__ import annotations

import random

from seekstack.traffic.turns import Holder, choose, hopeless


def test_nothing_short_nothing_unloaded():
    assert choose([Holder("a", 10, 100.0)], 0) == [] and choose([], -5) == []


def test_the_least_recently_used_idle_one_goes_first_and_no_more_than_needed():
    a, b, c = Holder("a", 10, 5.0), Holder("b", 10, 50.0), Holder("c", 10, 20.0)
    assert choose([a, b, c], 10) == [b]
    assert choose([a, b, c], 15) == [b, c]
    assert choose([a, b, c], 30) == [b, c, a]


def test_a_busy_one_is_never_chosen_and_while_it_is_needed_the_answer_is_wait():
    idle, busy = Holder("idle", 10, 60.0), Holder("busy", 10, None)
    assert choose([idle, busy], 10) == [idle]
    assert choose([idle, busy], 15) is None  # the idle one alone cannot cover it: wait, unload nothing
    assert not hopeless([idle, busy], 15) and hopeless([idle, busy], 25)


def test_against_every_subset():
    """On random holders: the choice covers the shortfall with idle holders only, and is the shortest
    prefix of them by idle time, longest first; None exactly when the idle ones cannot cover it."""
    rng = random.Random(7)
    for _ in range(300):
        holders = [Holder(f"m{i}", rng.choice([5, 10, 40]), rng.choice([None, rng.uniform(0, 100)]))
                   for i in range(rng.randint(0, 5))]
        short = rng.choice([-1, 0, 5, 12, 30, 70])
        chosen = choose(holders, short)
        idle = sorted((h for h in holders if h.idle_s is not None), key=lambda h: -h.idle_s)
        covering = [n for n in range(len(idle) + 1) if sum(h.bytes for h in idle[:n]) >= short]
        if short <= 0:
            assert chosen == []
        elif not covering:
            assert chosen is None
        else:
            assert chosen == idle[:covering[0]]
        assert hopeless(holders, short) == (short > 0 and sum(h.bytes for h in holders) < short)
        assert all(h.idle_s is not None for h in chosen or [])  # never a busy one
