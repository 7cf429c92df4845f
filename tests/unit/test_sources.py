"""Per-source limits before authentication: audited refusals, counted refusals, blocking, the bounded table."""

from __future__ import annotations

from seekstack.gateway import sources
from seekstack.gateway.sources import SourceGuard


def test_refusals_past_the_audited_number_are_summarized_once():
    guard = SourceGuard(failures_per_minute=10, audited_failures=3, requests_per_second=None)
    audited = [guard.refused("10.1.1.1", now=1000.0) for _ in range(8)]
    assert audited == [True] * 3 + [False] * 5
    (summary,) = guard.summaries()
    assert summary["ip"] == "10.1.1.1" and summary["count"] == 5 and summary["event"] == "refusals"
    assert guard.summaries() == []  # counted once


def test_a_source_past_its_failures_is_blocked_until_the_window_slides():
    guard = SourceGuard(failures_per_minute=4, audited_failures=4, requests_per_second=None)
    for _ in range(4):
        guard.refused("a", now=1000.0)
    assert guard.blocked("a", now=1000.0) is not None and guard.blocked("b", now=1000.0) is None
    assert guard.blocked("a", now=1000.0 + 61) is None  # a sliding minute later


def test_requests_per_second_is_a_token_bucket():
    guard = SourceGuard(failures_per_minute=10, audited_failures=3, requests_per_second=2)
    assert [guard.admit("a", now=5.0) for _ in range(3)][:2] == [None, None]
    assert guard.admit("a", now=5.0) is not None
    assert guard.admit("a", now=6.0) is None  # refilled


def test_the_table_of_sources_is_bounded(monkeypatch):
    monkeypatch.setattr(sources, "MAX_SOURCES", 5)
    guard = SourceGuard(failures_per_minute=1000, audited_failures=1, requests_per_second=None)
    for i in range(50):
        guard.refused(f"2001:db8::{i}", now=1000.0)
    assert len(guard._sources) <= 6


def test_an_ipv6_host_is_its_64_and_all_sources_share_a_ceiling(monkeypatch):
    monkeypatch.setattr(sources, "AUDITED_PER_MINUTE", 30)
    guard = SourceGuard(failures_per_minute=1000, audited_failures=5, requests_per_second=None)
    audited = [guard.refused(f"2001:db8:1:2::{i:x}", now=1000.0) for i in range(10)]
    assert audited == [True] * 5 + [False] * 5  # one /64, one source
    spray = [guard.refused(f"2001:db8:{i:x}::1", now=1000.0) for i in range(100)]  # 100 different /64s
    assert sum(spray) == 30 - 5  # the ceiling for all sources together
