"""The audit chain: every kind of tampering is named by verify; group commit; fail-closed."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from seekstack.errors import AuditUnavailableError
from seekstack.governance import audit as audit_mod
from seekstack.governance.audit import AuditLog, read_records, verify_log


def fill(directory, n: int, checkpoint_every: int = 10) -> AuditLog:
    audit_mod.CHECKPOINT_EVERY = checkpoint_every
    log = AuditLog(directory)

    async def write():  # batches of 5, as if 5 requests arrived per event-loop turn
        for start in range(0, n, 5):
            await asyncio.gather(*(log.append({"event": "request", "key_id": f"k{i % 3}", "team": "t"})
                                   for i in range(start, min(start + 5, n))))

    asyncio.run(write())
    return log


@pytest.fixture
def audit_dir(tmp_path):
    yield tmp_path
    audit_mod.CHECKPOINT_EVERY = 1000


def db(directory):
    return sqlite3.connect(directory / "audit.db", isolation_level=None)


def test_intact_log_verifies_with_checkpoints(audit_dir):
    fill(audit_dir, 25).close()
    verdict = verify_log(audit_dir)
    assert verdict.ok and verdict.records == 25 and verdict.checkpoints == 3  # at 10, 20 and at close (25)
    assert [r["seq"] for r in read_records(audit_dir / "audit.db")] == list(range(1, 26))


def test_group_commit_puts_one_loop_turn_in_one_transaction(audit_dir):
    log = AuditLog(audit_dir)
    commits = []
    log.db.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)

    async def burst():
        await asyncio.gather(*(log.append({"event": "request", "n": i}) for i in range(50)))

    asyncio.run(burst())
    assert log.seq == 50 and len(commits) == 1
    log.close()


def test_records_are_stored_as_canonical_json(audit_dir):
    """The stored text is the chain's input: sorted keys, no spaces, UTF-8 kept, control characters escaped."""
    log = AuditLog(audit_dir)
    record = {"event": "request", "user": "张三", "team": None, "note": "a\u2028b\x01\"\\", "pii": {"cn_mobile": 1},
              "latency_ms": 12.35, "ts": 1795800324.6775556}
    asyncio.run(log.append(dict(record)))
    log.close()
    (data,) = db(audit_dir).execute("SELECT data FROM records WHERE seq = 1").fetchone()
    assert data == json.dumps({"seq": 1, **record}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert verify_log(audit_dir).ok


def test_edit_is_detected(audit_dir):
    fill(audit_dir, 12).close()
    data = json.loads(db(audit_dir).execute("SELECT data FROM records WHERE seq = 7").fetchone()[0])
    data["key_id"] = "someone-else"
    db(audit_dir).execute("UPDATE records SET data = ? WHERE seq = 7", (json.dumps(data, sort_keys=True, separators=(",", ":")),))
    verdict = verify_log(audit_dir)
    assert not verdict.ok and verdict.first_bad == 7 and "edited" in verdict.problem


def test_delete_is_detected(audit_dir):
    fill(audit_dir, 12).close()
    db(audit_dir).execute("DELETE FROM records WHERE seq = 5")
    verdict = verify_log(audit_dir)
    assert not verdict.ok and verdict.first_bad == 5 and "missing" in verdict.problem


def test_reorder_is_detected(audit_dir):
    fill(audit_dir, 12).close()
    conn = db(audit_dir)
    a, b = (conn.execute("SELECT data, mac FROM records WHERE seq = ?", (s,)).fetchone() for s in (3, 4))
    conn.execute("UPDATE records SET data = ?, mac = ? WHERE seq = 3", b)
    conn.execute("UPDATE records SET data = ?, mac = ? WHERE seq = 4", a)
    verdict = verify_log(audit_dir)
    assert not verdict.ok and verdict.first_bad == 3


def test_truncation_after_a_checkpoint_is_detected(audit_dir):
    fill(audit_dir, 25).close()
    db(audit_dir).execute("DELETE FROM records WHERE seq > 18")
    verdict = verify_log(audit_dir)
    assert not verdict.ok and "truncated" in verdict.problem and verdict.first_bad == 19


def test_forged_checkpoint_is_detected(audit_dir):
    fill(audit_dir, 12).close()
    db(audit_dir).execute("UPDATE checkpoints SET head = ? WHERE count = 10", ("f" * 64,))
    verdict = verify_log(audit_dir)
    assert not verdict.ok and "signature" in verdict.problem


def test_a_request_alone_commits_at_once_and_the_chain_holds(audit_dir):
    log = fill(audit_dir, 5)
    step = log.append({"event": "request", "key_id": "k9"}, alone=True)
    with pytest.raises(StopIteration):
        step.send(None)  # finished without waiting for a loop turn: committed already
    assert [r["key_id"] for r in read_records(audit_dir / "audit.db")][-1] == "k9"

    async def alone_after_queued():  # something queued first: it joins the group, in order
        log.append_nowait({"event": "response", "key_id": "k10"})
        await log.append({"event": "request", "key_id": "k11"}, alone=True)

    asyncio.run(alone_after_queued())
    log.close()
    assert [r["key_id"] for r in read_records(audit_dir / "audit.db")][-3:] == ["k9", "k10", "k11"]
    assert verify_log(audit_dir).ok


@pytest.mark.parametrize("alone", [False, True])
def test_removed_store_fails_closed_and_stays_closed(audit_dir, alone):
    log = fill(audit_dir, 3)
    (audit_dir / "audit.db").rename(audit_dir / "moved.db")

    async def attempt():
        await log.append({"event": "request"}, alone=alone)

    with pytest.raises(AuditUnavailableError):
        asyncio.run(attempt())
    assert log.broken
    with pytest.raises(AuditUnavailableError):
        asyncio.run(attempt())


def test_keys_are_private_files(audit_dir):
    import stat

    fill(audit_dir, 1).close()
    for name in ("audit-chain.key", "audit-signing.key", "audit.db"):
        assert stat.S_IMODE((audit_dir / name).stat().st_mode) == 0o600, name


def test_retention_purges_a_prefix_and_verify_still_holds(audit_dir):
    import time as _time

    log = AuditLog(audit_dir)
    old = _time.time() - 200 * 86400

    async def write():
        for i in range(12):
            await log.append({"event": "request", "n": i, "ts": old + i if i < 8 else _time.time()})

    asyncio.run(write())
    deleted = log.purge(_time.time() - 184 * 86400)
    assert deleted == 8
    log.close()
    verdict = verify_log(audit_dir)
    assert verdict.ok, verdict
    assert [r["n"] for r in read_records(audit_dir / "audit.db")] == [8, 9, 10, 11]
    # the anchor is signed: moving it is tampering
    db(audit_dir).execute("UPDATE anchor SET seq = 5")
    assert not verify_log(audit_dir).ok


def test_retention_never_deletes_the_head(audit_dir):
    import time as _time

    log = fill(audit_dir, 3)
    assert log.purge(_time.time() + 10) == 2  # all are "old", but the newest stays to carry the chain
    log.close()
    assert verify_log(audit_dir).ok
