"""The audit chain: every kind of tampering is named by verify; group commit; fail-closed."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from seekstack.errors import AuditUnavailableError
from seekstack.governance import audit as audit_mod
from seekstack.governance.audit import AuditLog, read_records
from seekstack.governance.audit_verify import verify_log


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
    assert verdict.ok and verdict.records == 25 and verdict.checkpoints == 4  # at 1, 10, 20 and at close (25)
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


def test_a_record_nobody_waits_for_shares_the_next_commit_or_lingers_for_its_own(audit_dir):
    """A response record (append_nowait) does not pay for a commit of its own when a request
    follows within LINGER_SECONDS: it rides on that request's commit. Alone, it is committed
    by itself once the linger is over."""
    log = fill(audit_dir, 5)
    commits = []
    write = log._write
    log._write = lambda records: (commits.append(len(records)), write(records))[1]

    async def main():
        log.append_nowait({"event": "response", "key_id": "r1"})
        await asyncio.sleep(0)
        assert commits == []  # not yet: it waits for company
        await log.append({"event": "request", "key_id": "q2"}, alone=True)
        assert commits == [2]  # one commit for both, in order
        log.append_nowait({"event": "response", "key_id": "r2"})
        await asyncio.sleep(audit_mod.LINGER_SECONDS * 3)
        assert commits == [2, 1]  # nobody came: committed on its own, without a close

    asyncio.run(main())
    assert [r["key_id"] for r in read_records(audit_dir / "audit.db")][-3:] == ["r1", "q2", "r2"]
    log.close()
    assert verify_log(audit_dir).ok


@pytest.mark.parametrize("alone", [False, True])
def test_removed_store_fails_closed_and_stays_closed(audit_dir, alone):
    log = fill(audit_dir, 3)
    (audit_dir / "audit.db").rename(audit_dir / "moved.db")

    async def attempt():
        await log.append({"event": "request"}, alone=alone)

    with pytest.raises(AuditUnavailableError):
        asyncio.run(attempt())
    assert log.unavailable
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


def test_retention_moves_the_anchor_at_once_and_deletes_the_records_after_in_chunks(audit_dir):
    """The signed anchor moves past the retired records at once (one small commit); they are
    deleted after, a small chunk at a time. Until then — or when that deletion is cut short —
    they are outside the chain: verify, reads and the next plan start above the anchor, and the
    next deletion finishes the job."""
    import time as _time

    log = AuditLog(audit_dir)
    old = _time.time() - 200 * 86400

    async def write():
        for i in range(12):
            await log.append({"event": "request", "n": i, "ts": old + i if i < 8 else _time.time()})

    asyncio.run(write())
    cutoff = _time.time() - 184 * 86400
    assert log.apply_retention(log.retention_plan(cutoff))["deleted"] == 8
    count = lambda: db(audit_dir).execute("SELECT COUNT(*), MIN(seq) FROM records").fetchone()
    assert count() == (12, 1)  # retired, not yet deleted
    assert verify_log(audit_dir).ok
    assert [r["n"] for r in read_records(audit_dir / "audit.db")] == [8, 9, 10, 11]
    assert log.retention_plan(cutoff) is None  # nothing more to retire: plans start above the anchor
    db(audit_dir).execute("DELETE FROM records WHERE seq <= 3")  # a deletion cut short after a chunk
    assert verify_log(audit_dir).ok
    assert asyncio.run(log.delete_retained(chunk=2, pause=0)) == 5  # the rest, two at a time
    assert count() == (4, 9) and asyncio.run(log.delete_retained()) == 0
    log.close()
    assert verify_log(audit_dir).ok


def test_requests_go_on_being_audited_while_retention_deletes(audit_dir):
    """The deletion shares the writer's connection, a chunk per loop turn: records committed
    between its chunks are kept and chained, and the log verifies after."""
    import time as _time

    log = AuditLog(audit_dir)
    old = _time.time() - 200 * 86400

    async def run():
        for i in range(40):
            await log.append({"event": "request", "n": i, "ts": old + i})
        await log.append({"event": "request", "n": 40})
        log.apply_retention(log.retention_plan(_time.time() - 184 * 86400))
        deleting = asyncio.ensure_future(log.delete_retained(chunk=3, pause=0))
        for i in range(41, 61):  # requests meanwhile
            await log.append({"event": "request", "n": i})
            left.append(db(audit_dir).execute("SELECT COUNT(*) FROM records WHERE seq <= 40").fetchone()[0])
        return await deleting

    left: list[int] = []  # retired records not yet deleted, after each request's record
    assert asyncio.run(run()) == 40
    assert 0 < left[0] < 40 and left == sorted(left, reverse=True)  # a chunk at a time, between the requests
    assert [r["n"] for r in read_records(audit_dir / "audit.db")] == list(range(40, 61))
    log.close()
    assert verify_log(audit_dir).ok


def test_the_retention_plan_made_in_a_process_of_its_own_is_the_same(audit_dir, caplog):
    """The gateway plans retention in a separate process (the walk would share the event loop's
    interpreter lock in a thread): the same plan, and the same refusal past a bad record."""
    import time as _time

    log = AuditLog(audit_dir)
    old = _time.time() - 200 * 86400

    async def write():
        for i in range(12):
            await log.append({"event": "request", "n": i, "ts": old + i if i < 8 else _time.time()})

    asyncio.run(write())
    cutoff = _time.time() - 184 * 86400
    assert asyncio.run(log.retention_plan_apart(cutoff)) == log.retention_plan(cutoff)
    assert log.retention_plan(cutoff).last_seq == 8
    assert asyncio.run(log.retention_plan_apart(old - 1)) is None
    db(audit_dir).execute("UPDATE records SET data = replace(data, '\"n\":3', '\"n\":33') WHERE seq = 4")
    with pytest.raises(audit_mod.AuditTamperedError, match="record 4 fails its check"):
        asyncio.run(log.retention_plan_apart(cutoff))
    assert not [r for r in caplog.records if "planner process failed" in r.getMessage()]  # not the thread's answer
    log.close()


def test_retention_never_deletes_the_head(audit_dir):
    import time as _time

    log = fill(audit_dir, 3)
    assert log.purge(_time.time() + 10) == 2  # all are "old", but the newest stays to carry the chain
    log.close()
    assert verify_log(audit_dir).ok


# ---------------------------------------------------------------- tampering that needs no key (issue 15)
def test_an_edited_time_index_is_detected_and_retention_deletes_nothing_by_it(audit_dir):
    """The ts column is only an index: editing it to make records look old neither fools verify
    nor makes retention delete them (it deletes by the chained time, and stops at a bad record)."""
    import time as _time

    log = fill(audit_dir, 30)
    db(audit_dir).execute("UPDATE records SET ts = 0 WHERE seq <= 25")
    verdict = verify_log(audit_dir)
    assert not verdict.ok and verdict.first_bad == 1 and "time" in verdict.problem
    with pytest.raises(audit_mod.AuditTamperedError):
        log.purge(_time.time() - 184 * 86400)
    assert db(audit_dir).execute("SELECT COUNT(*) FROM records").fetchone()[0] == 30
    log.close()


def test_an_edited_record_time_is_found_even_with_its_index(audit_dir):
    fill(audit_dir, 12).close()
    conn = db(audit_dir)
    data = json.loads(conn.execute("SELECT data FROM records WHERE seq = 4").fetchone()[0])
    data["ts"] = 0
    conn.execute("UPDATE records SET data = ?, ts = 0 WHERE seq = 4", (audit_mod.canonical(data),))
    verdict = verify_log(audit_dir)
    assert not verdict.ok and verdict.first_bad == 4 and "edited" in verdict.problem


def test_tail_trimmed_with_its_checkpoint_rows_is_found_by_the_checkpoint_file(audit_dir):
    fill(audit_dir, 25).close()
    conn = db(audit_dir)
    conn.execute("DELETE FROM records WHERE seq > 12")
    conn.execute("DELETE FROM checkpoints WHERE count > 12")
    verdict = verify_log(audit_dir)
    assert not verdict.ok and "truncated" in verdict.problem and verdict.first_bad == 13


def test_deleted_checkpoint_rows_are_found(audit_dir):
    fill(audit_dir, 25).close()
    db(audit_dir).execute("DELETE FROM checkpoints")
    verdict = verify_log(audit_dir)
    assert not verdict.ok and "missing from the database" in verdict.problem


@pytest.mark.parametrize("what", ["rows", "database", "checkpoint file", "both"])
def test_an_emptied_or_deleted_log_is_found(audit_dir, what):
    fill(audit_dir, 25).close()
    if what in ("rows",):
        conn = db(audit_dir)
        for table in ("records", "checkpoints", "anchor"):
            conn.execute(f"DELETE FROM {table}")
    if what in ("database", "both"):
        for suffix in ("", "-wal", "-shm"):
            (audit_dir / f"audit.db{suffix}").unlink(missing_ok=True)
    if what in ("checkpoint file", "both"):
        (audit_dir / "audit-checkpoints.jsonl").unlink()
    verdict = verify_log(audit_dir)
    assert not verdict.ok and verdict.problem, verdict


def test_a_missing_chain_key_is_an_error_never_a_new_key(audit_dir):
    from seekstack.errors import AuditUnavailableError

    fill(audit_dir, 5).close()
    (audit_dir / "audit-chain.key").unlink()
    verdict = verify_log(audit_dir)
    assert not verdict.ok and "chain key" in verdict.problem
    assert not (audit_dir / "audit-chain.key").exists()  # verify made none
    with pytest.raises(AuditUnavailableError, match="audit-chain.key is missing"):
        AuditLog(audit_dir)  # nor does the writer
    assert not (audit_dir / "audit-chain.key").exists()


def test_a_shipped_copy_of_the_log_stream_finds_a_trim_the_local_files_hide(audit_dir, tmp_path_factory):
    """Someone who trims the tail and the checkpoint file alike is caught by the copy shipped off the machine."""
    fill(audit_dir, 25).close()
    shipped = tmp_path_factory.mktemp("worm") / "gateway.log"
    lines = (audit_dir / "audit-checkpoints.jsonl").read_text().splitlines()
    shipped.write_text("".join(json.dumps({"level": "info", "logger": "seekstack.audit", "audit_checkpoint": json.loads(l)}) + "\n"
                               for l in lines))
    conn = db(audit_dir)
    conn.execute("DELETE FROM records WHERE seq > 9")
    conn.execute("DELETE FROM checkpoints WHERE count > 9")
    (audit_dir / "audit-checkpoints.jsonl").write_text("\n".join(lines[:2]) + "\n")  # genesis and the checkpoint at 1
    assert verify_log(audit_dir).ok  # the local files agree with each other ...
    verdict = verify_log(audit_dir, external=shipped)
    assert not verdict.ok and "shipped" in verdict.problem and verdict.first_bad == 10  # ... the shipped copy does not


def test_checkpoints_reach_the_log_stream(audit_dir, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="seekstack.audit"):
        fill(audit_dir, 3).close()
    entries = [r.audit_checkpoint for r in caplog.records if hasattr(r, "audit_checkpoint")]
    assert [e["kind"] for e in entries] == ["genesis", "checkpoint", "checkpoint"] and entries[-1]["count"] == 3


def test_retention_proves_what_it_deleted(audit_dir):
    import time as _time

    log = AuditLog(audit_dir)
    old = _time.time() - 200 * 86400

    async def write():
        for i in range(12):
            await log.append({"event": "request", "n": i, "ts": old + i if i < 8 else _time.time()})

    asyncio.run(write())
    plan = log.retention_plan(_time.time() - 184 * 86400)
    proof = log.apply_retention(plan)
    assert proof["deleted"] == 8 and proof["first_seq"] == 1 and proof["last_seq"] == 8
    log.close()
    entries = [json.loads(l) for l in (audit_dir / "audit-checkpoints.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "retention" and e["count"] == 8 and e["head"] == proof["last_mac"] for e in entries)
    assert verify_log(audit_dir).ok
    # rolling the anchor back (to hide that records are missing) is found
    conn = db(audit_dir)
    conn.execute("DELETE FROM anchor")
    assert not verify_log(audit_dir).ok


def test_an_unwritable_store_refuses_then_recovers_by_itself(audit_dir, monkeypatch):
    """Disk full, I/O error: requests are refused, logged once, and served again once the store takes writes."""
    log = fill(audit_dir, 3)
    monkeypatch.setattr(audit_mod, "RETRY_SECONDS", 0.0)
    real = log._write
    failing = {"on": True}

    def write(records):
        if failing["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        real(records)

    log._write = write

    async def attempt():
        await log.append({"event": "request"})

    for _ in range(3):
        with pytest.raises(AuditUnavailableError):
            asyncio.run(attempt())
    assert log.unavailable == "OperationalError: database or disk is full"  # one line, not nested
    failing["on"] = False
    asyncio.run(attempt())
    assert log.unavailable is None and log.seq == 4
    log.close()
    assert verify_log(audit_dir).ok


def test_over_its_size_budget_the_store_refuses(audit_dir, monkeypatch):
    log = fill(audit_dir, 3)
    log.max_bytes = 1 << 20
    monkeypatch.setattr(log, "used_bytes", lambda: 2 << 20)

    async def attempt():
        await log.append({"event": "request"})

    with pytest.raises(AuditUnavailableError):
        asyncio.run(attempt())
    assert "budget" in log.unavailable
    log.close()


def test_a_stale_retention_plan_deletes_nothing(audit_dir):
    """Two runs planned at once (the daily one and one on request): the later apply must not move the anchor back."""
    import time as _time

    log = AuditLog(audit_dir)
    old = _time.time() - 200 * 86400

    async def write():
        for i in range(12):
            await log.append({"event": "request", "n": i, "ts": old + i if i < 10 else _time.time()})

    asyncio.run(write())
    early = log.retention_plan(old + 4.5)   # up to record 5
    late = log.retention_plan(old + 8.5)    # up to record 9
    assert log.apply_retention(late)["deleted"] == 9
    assert log.apply_retention(early) == {"deleted": 0}
    log.close()
    assert verify_log(audit_dir).ok


def test_a_truncated_shm_file_does_not_kill_the_writer(audit_dir):
    """SQLite maps audit.db-shm into memory; truncated under the writer, its next write died of SIGBUS.
    Run in a child process: the crash, if it came back, must not take the test runner with it."""
    import subprocess
    import sys

    script = f"""
import asyncio, os
from pathlib import Path
from seekstack.governance.audit import AuditLog
log = AuditLog(Path({str(audit_dir)!r}))
async def write(n):
    for i in range(n):
        await log.append({{"event": "request", "i": i}})
asyncio.run(write(5))
os.truncate(Path({str(audit_dir)!r}) / "audit.db-shm", 0)
asyncio.run(write(5))
log.close()
print(log.seq)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "10", (result.returncode, result.stderr[-500:])
    assert "grew it back" in result.stderr
    assert verify_log(audit_dir).ok


def test_sqlite_side_files_are_private_from_the_first_start(tmp_path):
    import os
    import stat

    old = os.umask(0o022)  # a usual umask: files would be 0644
    try:
        log = AuditLog(tmp_path)
        asyncio.run(log.append({"event": "request"}))
        for name in ("audit.db", "audit.db-wal", "audit.db-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        log.close()
    finally:
        os.umask(old)
