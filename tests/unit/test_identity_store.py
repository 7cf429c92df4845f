"""The identity store on both databases: the same answers, versioned migrations, and a change
feed that tells one gateway of another's write (SQLite: data_version and the changes counter;
PostgreSQL: LISTEN/NOTIFY) — of every write but bookkeeping, without ever waiting for one."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from seekstack.errors import ConfigError, ConflictError
from seekstack.governance.store import SCHEMA, SCHEMA_VERSION, SqliteIdentityStore


def test_both_databases_answer_the_same(opener):
    store = opener()
    store.create_team("t")
    store.create_user("ann", "t", "api_consumer")
    with pytest.raises(ConflictError):
        store.create_user("ann", "t", "api_consumer")
    record = store.add_key("k1", "hash", "laptop", "ann", ["m*"], ["*"], None, role="viewer")
    assert (record.user, record.team, record.role, record.user_role, record.models) == \
        ("ann", "t", "viewer", "api_consumer", ("m*",))
    store.set_limits("key", "k1", {"rpm": 5}, 1)
    store.set_limits("key", "k1", {"rpm": 7, "tpm": 100}, 2)  # replaces
    assert store.limits() == [{"scope": "key", "name": "k1", "rpm": 7, "tpm": 100, "concurrent": None,
                               "daily_tokens": None, "monthly_tokens": None, "imposed_rank": 2}]
    row = ("2026-11-30", "k1", "ann", "t", "m", 1, 10, 20, 3)
    store.add_usage([row])
    store.add_usage([row])  # adds up
    assert store.usage(team="t")[0] == {"day": "2026-11-30", "key_id": "k1", "user": "ann", "team": "t",
                                        "model": "m", "requests": 2, "prompt_tokens": 20,
                                        "completion_tokens": 40, "reasoning_tokens": 6}
    store.touch_keys({"k1": 123.0})
    store.revoke_key("k1")
    assert store.key("k1").last_used == 123.0 and store.key("k1").revoked is not None
    assert [k.id for k in store.keys("t")] == ["k1"] and store.keys("other") == []


def test_a_write_by_one_is_seen_by_another_within_a_second(opener):
    writer, reader = opener(), opener()
    writer.create_team("t")
    reader.changed_elsewhere()  # whatever came before
    assert not reader.changed_elsewhere()
    writer.create_user("bob", "t", "viewer")
    started = time.monotonic()
    while not reader.changed_elsewhere():
        assert time.monotonic() - started < 1.0, "the change did not reach the other store within 1 s"
        time.sleep(0.001)
    assert not reader.changed_elsewhere()  # once per change


def test_bookkeeping_is_not_announced_to_the_other_gateways(opener):
    """Every gateway writes last uses, usage and audit checkpoints every few seconds; were they
    announced, every gateway would drop its key, session and limit caches as often, and read them
    all again on its event loop. A revocation still is announced."""
    writer, reader = opener(), opener()
    writer.create_team("t")
    writer.create_user("bob", "t", "viewer")
    writer.add_key("k1", "h", "n", "bob", ["*"], ["*"], None)
    writer.register_audit_writer("gw-a", "cHVibGlj")
    started = time.monotonic()
    while not reader.changed_elsewhere():  # the changes above, whenever they arrive
        assert time.monotonic() - started < 1.0
        time.sleep(0.001)
    writer.touch_keys({"k1": 123.0})
    writer.add_usage([("2026-11-30", "k1", "bob", "t", "m", 1, 2, 3, 0)], mark=("gw-a", 7))
    writer.publish_audit_entry("gw-a", "checkpoint", 1000, "ab" * 32, 1.0, "sig")
    writer.add_session("s1", "k1", 1.0)  # a sign-in is announced; bookkeeping follows it
    writer.touch_sessions({"s1": 2.0})
    time.sleep(0.6 if opener.kind == "postgres" else 0)  # what the listener would hear, it has heard
    assert reader.changed_elsewhere()  # the sign-in, once
    writer.touch_sessions({"s1": 3.0})
    writer.touch_keys({"k1": 124.0})
    time.sleep(0.6 if opener.kind == "postgres" else 0)
    assert not reader.changed_elsewhere()
    assert reader.key("k1").last_used == 124.0 and reader.usage_mark("gw-a") == 7  # written all the same
    writer.revoke_key("k1")
    started = time.monotonic()
    while not reader.changed_elsewhere():
        assert time.monotonic() - started < 1.0, "a revocation was not announced"
        time.sleep(0.001)


def test_sqlite_a_gateways_own_change_is_not_news_to_it_but_one_before_it_unseen_is(tmp_path):
    a, b = SqliteIdentityStore(tmp_path / "seekstack.db"), SqliteIdentityStore(tmp_path / "seekstack.db")
    a.create_team("t")
    b.add_usage([], mark=("gw-b", 1))  # b's bookkeeping: a commit a sees, announcing nothing
    assert not a.changed_elsewhere()  # a's own team is not news to a
    b.create_team("u")  # b's change, which a has not looked at yet …
    a.create_team("v")  # … when a changes something itself
    assert a.changed_elsewhere() and not a.changed_elsewhere()  # b's is still reported, once
    a.close()
    b.close()


def test_the_change_check_never_waits_for_a_write_in_flight(opener):
    """The request path asks "changed?" on every request; a worker thread's batched write holds
    the store's lock through its commit (an fsync: tens of ms on a slow disk). The question must
    not wait for it — that would stall the event loop — and the change is reported once the write is done."""
    writer, reader = opener(), opener()
    writer.create_team("t")
    time.sleep(0.6 if opener.kind == "postgres" else 0)  # the team's NOTIFY has arrived
    reader.changed_elsewhere()
    answers: list[bool] = []
    reader.lock.acquire()  # a write in flight on the reader's connection, from another thread
    try:
        writer.create_user("bob", "t", "viewer")
        asking = threading.Thread(target=lambda: answers.append(reader.changed_elsewhere()))
        asking.start()
        asking.join(timeout=5)
        assert not asking.is_alive(), "the change check waited for the write in flight"
    finally:
        reader.lock.release()
    asking.join()
    if not answers[0]:  # not seen yet (SQLite skips the look while the lock is held): a later check sees it
        started = time.monotonic()
        while not reader.changed_elsewhere():
            assert time.monotonic() - started < 1.0, "the change was not reported after the write"
            time.sleep(0.001)
    assert not reader.changed_elsewhere()  # once


def test_migrations_make_an_empty_database_current_and_upgrade_an_old_one(opener):
    if opener.kind == "sqlite":
        db = sqlite3.connect(opener.where)  # a version-1 database, as seekstack 0.1 left it
        db.executescript(SCHEMA)
        db.execute("INSERT INTO teams VALUES ('t', 0)")
        db.execute("INSERT INTO users VALUES ('old', 't', 'viewer', 0)")
        db.commit()
        db.close()
    else:
        import psycopg

        from seekstack.governance.store_pg import MIGRATIONS

        with psycopg.connect(opener.where, autocommit=True) as conn:
            conn.execute(MIGRATIONS[0])
            conn.execute("CREATE TABLE seekstack_schema (version INTEGER NOT NULL); INSERT INTO seekstack_schema VALUES (1)")
            conn.execute("INSERT INTO teams VALUES ('t', 0); INSERT INTO users VALUES ('old', 't', 'viewer', 0)")
    store = opener()
    assert store.user("old") == {"name": "old", "team": "t", "role": "viewer"}  # kept
    store.add_key("k", "h", "n", "old", ["*"], ["*"], None, role="viewer")  # the version-2 column exists
    store.set_limits("user", "old", {"rpm": 1}, 3)
    assert store.limit("user", "old")["imposed_rank"] == 3
    assert _version(opener) == SCHEMA_VERSION
    opener()  # opening a current database again changes nothing
    assert _version(opener) == SCHEMA_VERSION


def test_a_database_newer_than_this_seekstack_is_refused(opener):
    opener().close()
    if opener.kind == "sqlite":
        db = sqlite3.connect(opener.where)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.close()
    else:
        import psycopg

        with psycopg.connect(opener.where, autocommit=True) as conn:
            conn.execute("UPDATE seekstack_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this seekstack knows"):
        opener()


def test_an_unreachable_postgres_is_one_line_without_the_password():
    from seekstack.governance.store_pg import PostgresIdentityStore

    with pytest.raises(ConfigError) as refused:
        PostgresIdentityStore("postgresql://seekstack:hunter2@127.0.0.1:9/seekstack", connect_timeout=2)
    assert "cannot connect to the governance database postgresql://seekstack@127.0.0.1:9/seekstack" in refused.value.message
    assert "hunter2" not in refused.value.message and "\n" not in refused.value.message


def _version(opener) -> int:
    if opener.kind == "sqlite":
        db = sqlite3.connect(opener.where)
        try:
            return db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    import psycopg

    with psycopg.connect(opener.where) as conn:
        return conn.execute("SELECT version FROM seekstack_schema").fetchone()[0]
