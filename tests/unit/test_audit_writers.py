"""One audit log across many writers: three gateways' chains checked together against the shared
store (SQLite and a real PostgreSQL), tampering and a missing writer segment found, export merged."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from seekstack.governance import audit_writers
from seekstack.governance.audit import AuditLog
from seekstack.governance.store import SqliteIdentityStore


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request, tmp_path):
    """(the shared store, the settings that name it)."""
    if request.param == "sqlite":
        settings = {"state_dir": str(tmp_path / "state")}
        store = SqliteIdentityStore(tmp_path / "state" / "seekstack.db")
    else:
        from seekstack.governance.store_pg import PostgresIdentityStore

        url = request.getfixturevalue("postgres").new_database()
        settings = {"state_dir": str(tmp_path / "state"), "storage": {"url": url}}
        store = PostgresIdentityStore(url)
    yield store, settings
    store.close()


def three_chains(tmp_path, store) -> list:
    """Three gateways' audit logs, their records interleaved in time; closed (final checkpoints published)."""
    directories = [tmp_path / f"audit-{name}" for name in "abc"]
    logs = [AuditLog(d) for d in directories]
    for log in logs:
        audit_writers.attach(log, store)

    async def write():
        for i in range(30):
            log = logs[i % 3]
            await log.append({"event": "request", "decision": "allow", "ts": 1_800_000_000 + i, "n": i}, alone=True)

    asyncio.run(write())
    for log in logs:
        log.close()
    return directories


def test_every_chain_verifies_and_export_merges_them_by_time(tmp_path, shared):
    store, _ = shared
    directories = three_chains(tmp_path, store)
    verdict = audit_writers.verify_writers(store, directories)
    assert verdict.ok, verdict.problems
    assert len(verdict.writers) == 3 and all(w["records"] == 10 for w in verdict.writers.values())
    merged = list(audit_writers.merged_records(directories))
    assert [r["n"] for r in merged] == list(range(30))
    assert len({r["writer"] for r in merged}) == 3


def test_an_edited_record_and_a_missing_writer_segment_are_found(tmp_path, shared):
    store, _ = shared
    a, b, c = three_chains(tmp_path, store)
    writer_b = (b / "audit-writer.id").read_text()
    with sqlite3.connect(b / "audit.db") as db:  # edit one of b's records
        db.execute("UPDATE records SET data = replace(data, '\"decision\":\"allow\"', '\"decision\":\"deny\"') WHERE seq = 4")
    verdict = audit_writers.verify_writers(store, [a, b, c])
    assert not verdict.ok and any(p.startswith(f"writer {writer_b}: first bad record is #4") for p in verdict.problems)
    missing = audit_writers.verify_writers(store, [a, c])  # b's chain not handed over
    assert not missing.ok and missing.problems == [
        f"writer {writer_b}: its chain is missing (a missing writer segment; the shared store vouches for 10 record(s))"]


def test_a_tail_cut_with_its_own_checkpoints_is_found_by_the_shared_store(tmp_path, shared):
    store, _ = shared
    a, b, c = three_chains(tmp_path, store)
    # Cut c's last 3 records and every trace of them on c's own disk: the database's checkpoint
    # rows and the checkpoint file's lines past record 7.
    with sqlite3.connect(c / "audit.db") as db:
        db.execute("DELETE FROM records WHERE seq > 7")
        db.execute("DELETE FROM checkpoints WHERE count > 7")
    side = c / "audit-checkpoints.jsonl"
    kept = [line for line in side.read_text().splitlines() if json.loads(line)["count"] <= 7]
    side.write_text("\n".join(kept) + "\n")
    writer_c = (c / "audit-writer.id").read_text()
    verdict = audit_writers.verify_writers(store, [a, b, c])
    assert not verdict.ok
    assert any(p.startswith(f"writer {writer_c}: first bad record is #8: the log ends at record 7 but a checkpoint "
                            f"in the shared store covers 10: truncated") for p in verdict.problems), verdict.problems


def test_a_chain_re_signed_with_another_key_is_found(tmp_path, shared):
    store, _ = shared
    a, b, c = three_chains(tmp_path, store)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (a / "audit-signing.pub").write_bytes(other)
    verdict = audit_writers.verify_writers(store, [a, b, c])
    assert not verdict.ok and any("is not the key it registered" in p for p in verdict.problems)


def test_the_cli_checks_every_chain_and_names_what_is_missing(tmp_path, shared):
    store, settings = shared
    a, b, c = three_chains(tmp_path, store)
    config = tmp_path / "seekstack.yaml"
    config.write_text(yaml.safe_dump(settings))

    def verify(*chains):
        args = [arg for d in chains for arg in ("--chains", str(d))]
        return subprocess.run([sys.executable, "-m", "seekstack", "audit", "verify", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=60)

    ok = verify(a, b, c)
    assert ok.returncode == 0 and "ok: 3 writer(s), every chain intact and present" in ok.stdout, ok.stderr
    missing = verify(a, b)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "its chain is missing" in missing.stderr


def _write(log: AuditLog, n: int) -> None:
    async def write():
        for i in range(n):
            await log.append({"event": "request", "decision": "allow", "n": i}, alone=True)

    asyncio.run(write())


def test_a_chain_restored_from_an_older_copy_is_named_at_start(tmp_path, shared):
    store, _ = shared
    directory = tmp_path / "audit"
    log = AuditLog(directory)
    audit_writers.attach(log, store)
    assert log.diverged is None
    _write(log, 5)
    log.close()
    shutil.copytree(directory, tmp_path / "backup")
    log = AuditLog(directory)  # a restart: the same chain goes on
    audit_writers.attach(log, store)
    assert log.diverged is None
    _write(log, 5)
    log.close()  # the store now vouches for 10 records
    shutil.rmtree(directory)
    shutil.copytree(tmp_path / "backup", directory)
    restored = AuditLog(directory)
    audit_writers.attach(restored, store)
    assert restored.diverged.startswith("the shared store vouches for 10 record(s), this chain ends at 5")
    restored.close()


def test_a_copied_audit_directory_is_named_at_start(tmp_path, shared):
    """One gateway's audit directory copied to another (a cloned VM image): the copy is named once
    the store has seen the first chain go on — behind it, or at a record with another head."""
    store, _ = shared
    first = tmp_path / "first"
    log = AuditLog(first)
    audit_writers.attach(log, store)
    _write(log, 3)
    log.close()
    shutil.copytree(first, tmp_path / "clone")
    log = AuditLog(first)
    audit_writers.attach(log, store)
    _write(log, 4)
    log.close()  # the store vouches for the first chain's record 7
    clone = AuditLog(tmp_path / "clone")
    audit_writers.attach(clone, store)
    assert clone.diverged.startswith("the shared store vouches for 7 record(s), this chain ends at 3")
    clone.on_vouch = None
    _write(clone, 5)  # the copy went on by itself, past record 7
    clone.close()
    clone = AuditLog(tmp_path / "clone")
    audit_writers.attach(clone, store)
    assert clone.diverged.startswith("record 7 is not the one the shared store vouches for")
    clone.close()


def test_a_gateway_whose_chain_diverged_says_so_in_readyz_and_stays_ready(tmp_path):
    """A real gateway (in-process, on the simulator) restarted on its audit directory's older copy:
    /readyz names the divergence; it still serves, every request audited in this chain."""
    from inprocess import gateway

    audit, backup = tmp_path / "state" / "audit", tmp_path / "backup"

    async def start_and_serve() -> dict:
        async with gateway(tmp_path) as gw:
            key = (tmp_path / "state" / "admin.key").read_text().strip()
            served = await gw.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert served.status_code == 200
            ready = await gw.client.get("/readyz")
            assert ready.status_code == 200
            return ready.json()

    assert "audit_chain" not in asyncio.run(start_and_serve())
    shutil.copytree(audit, backup)
    assert "audit_chain" not in asyncio.run(start_and_serve())  # restarted on its own chain: nothing to say
    shutil.rmtree(audit)
    shutil.copytree(backup, audit)  # restored from the older copy
    assert asyncio.run(start_and_serve())["audit_chain"].startswith("diverged: the shared store vouches for ")


def test_a_gateway_whose_writer_another_process_took_over_says_so_at_its_next_heartbeat(tmp_path):
    """Two copies of one audit directory started together (or one cut off from the database long
    enough for its copy to start): the roster keeps the last to enrol. The other learns it at its
    next heartbeat: its chain is named as diverged in /readyz and the metrics, and it stays ready."""
    from inprocess import gateway

    from seekstack.governance import roster

    async def run() -> tuple[dict, str]:
        async with gateway(tmp_path) as gw:
            governance = gw.app.state.governance
            assert "audit_chain" not in (await gw.client.get("/readyz")).json()
            copy = SqliteIdentityStore(tmp_path / "state" / "seekstack.db")
            copy.gateway_started(governance.audit.writer, "the-copy", "host-b", "10.0.0.9:8800", "/srv/audit", "0",
                                 4242, json.dumps(roster.policy_of(governance.settings)))
            copy.close()
            await governance.flush_off_loop()  # the heartbeat
            ready = await gw.client.get("/readyz")
            assert ready.status_code == 200
            metrics = await gw.client.get("/metrics", headers={"Authorization": f"Bearer {gw.key}"})
            return ready.json(), metrics.text

    ready, metrics = asyncio.run(run())
    assert ready["audit_chain"].startswith("diverged: another process (pid 4242 on host-b) enrolled under this "
                                           "chain's writer")
    assert "seekstack_audit_chain_diverged 1.0" in metrics
