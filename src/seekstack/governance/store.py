"""Teams, users, API keys, limits and usage: the identity store, in SQLite (WAL) under the
state directory by default, or in PostgreSQL (:mod:`.store_pg`) for gateways on several hosts.

Small and synchronous on purpose: admin writes are rare, and the request path reads keys
through :class:`~seekstack.governance.auth.Authenticator`'s cache, not from here.

The schema is versioned (``PRAGMA user_version``): ``MIGRATIONS`` are ordered steps, each
applied once, in one transaction with the version bump; a database newer than this code
knows is refused rather than misread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ConflictError, NotFoundError
from .sqlite import open_private, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS teams (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, team TEXT NOT NULL REFERENCES teams(name), role TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL, name TEXT NOT NULL, user TEXT NOT NULL REFERENCES users(name),
    models TEXT NOT NULL, endpoints TEXT NOT NULL, created REAL NOT NULL, expires REAL, revoked REAL, last_used REAL);
CREATE TABLE IF NOT EXISTS limits (
    scope TEXT NOT NULL, name TEXT NOT NULL, rpm INTEGER, tpm INTEGER, concurrent INTEGER,
    daily_tokens INTEGER, monthly_tokens INTEGER, PRIMARY KEY (scope, name));
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, key_id TEXT NOT NULL, user TEXT NOT NULL, team TEXT NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, PRIMARY KEY (day, key_id, model));
"""

LIMIT_FIELDS = ("rpm", "tpm", "concurrent", "daily_tokens", "monthly_tokens")

# Ordered schema steps after SCHEMA (version 1); step i brings the database to version i + 2.
MIGRATIONS: tuple[str, ...] = (
    # 2: a key may carry a lesser role than its user's; a limit remembers the rank that imposed it
    "ALTER TABLE keys ADD COLUMN role TEXT; ALTER TABLE limits ADD COLUMN imposed_rank INTEGER NOT NULL DEFAULT 0;",
    # 3: every gateway's audit chain is registered, and its signed checkpoints published, here
    "CREATE TABLE audit_writers (writer TEXT PRIMARY KEY, public_key TEXT NOT NULL, registered REAL NOT NULL); "
    "CREATE TABLE audit_checkpoints (writer TEXT NOT NULL REFERENCES audit_writers(writer), kind TEXT NOT NULL, "
    "count INTEGER NOT NULL, head TEXT NOT NULL, ts REAL NOT NULL, sig TEXT NOT NULL, PRIMARY KEY (writer, kind, count));",
    # 4: console sign-in sessions (the token's hash only), shared so that a sign-out ends it on every gateway
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, key_id TEXT NOT NULL REFERENCES keys(id), created REAL NOT NULL, "
    "last_seen REAL NOT NULL, ended REAL);",
    # 5: a user may have a console password (scrypt of an HMAC under the pepper)
    "ALTER TABLE users ADD COLUMN password TEXT;",
    # 6: how far each gateway's audit chain has been counted into usage (moved in the same commit as the rows)
    "CREATE TABLE usage_marks (writer TEXT PRIMARY KEY, seq INTEGER NOT NULL);",
    # 7: a counter every announced write moves, so that bookkeeping writes (last uses, usage, audit
    # checkpoints) do not make the other gateways drop their caches
    "CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL); "
    "INSERT INTO changes VALUES (1, 0);",
    # 8: what every gateway on this database must agree on (the fingerprint of the pepper keys are hashed with)
    "CREATE TABLE fleet_facts (name TEXT PRIMARY KEY, value TEXT NOT NULL, set_at REAL NOT NULL);",
    # 9: the gateways on this database: each by its audit writer, with where it runs and when it was last seen
    "CREATE TABLE gateways (writer TEXT PRIMARY KEY, host TEXT NOT NULL, address TEXT NOT NULL, audit_dir TEXT NOT NULL, "
    "version TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL, seen REAL NOT NULL, stopped REAL);",
    # 10: which process writes each chain now (a copy of an audit directory is another process under
    # the same writer), and the fingerprints of the settings a request's answer depends on
    "ALTER TABLE gateways ADD COLUMN instance TEXT; ALTER TABLE gateways ADD COLUMN policy TEXT;",
)
SCHEMA_VERSION = len(MIGRATIONS) + 1


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the database to SCHEMA_VERSION under the write lock (gateways sharing it may start together)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0] or 1
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{path} has schema version {version}, newer than this seekstack knows ({SCHEMA_VERSION})",
                              fix="run the seekstack version that wrote it, or a newer one")
        for step in range(version, SCHEMA_VERSION):
            for statement in filter(str.strip, MIGRATIONS[step - 1].split(";")):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@dataclass(frozen=True)
class KeyRecord:
    id: str
    hash: str
    name: str
    user: str
    team: str
    role: str                 # what the key may do: its own role, or else its user's
    models: tuple[str, ...]
    endpoints: tuple[str, ...]
    created: float
    expires: float | None
    revoked: float | None
    last_used: float | None
    user_role: str = ""       # its user's role, which the key's own role may not exceed

    def live(self, now: float) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked is None and (self.expires is None or self.expires > now)

    def public(self) -> dict:
        """What the admin API shows: never the hash."""
        return {"id": self.id, "name": self.name, "user": self.user, "team": self.team, "role": self.role,
                "models": list(self.models), "endpoints": list(self.endpoints), "created": self.created,
                "expires": self.expires, "revoked": self.revoked, "last_used": self.last_used}


class IdentityStore:
    """The queries, written once for both databases: ``?`` placeholders (the PostgreSQL store
    rewrites them), standard upserts, and ``"user"`` quoted (a reserved word in PostgreSQL).
    A subclass opens the database, migrates it, runs statements and says when another
    process changed it (:meth:`changed_elsewhere`)."""

    integrity_errors: tuple[type[Exception], ...] = ()
    # Why the database cannot be reached now (readiness says so); None when it can. A file next
    # to the gateway always can: only a database server is ever unavailable.
    unavailable: str | None = None
    # One statement or transaction at a time: admin calls run in worker threads beside the
    # event loop's own (key lookups, batched writes), over one connection.
    lock: threading.RLock

    # A write is announced to the other processes sharing the database (their change feed makes
    # them drop their caches) unless ``announce=False``: bookkeeping that no cache holds — last
    # uses, usage, published audit checkpoints — written every few seconds by every gateway.

    def execute(self, sql: str, args: tuple | list = (), *, announce: bool = True) -> list[tuple]:
        raise NotImplementedError

    def executemany(self, sql: str, rows: list[tuple], *, announce: bool = True) -> None:
        """All rows in one transaction: all or none."""
        self.execute_all([(sql, rows)], announce=announce)

    def execute_all(self, batches: list[tuple[str, list[tuple]]], *, announce: bool = True) -> None:
        """Every statement with each of its rows, in one transaction: all or none."""
        raise NotImplementedError

    def changed_elsewhere(self) -> bool:
        """True once after another process (another gateway, the CLI) committed an announced change.

        Asked before every request on the event loop: it never waits for a write in flight."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _insert(self, sql: str, args: tuple, conflict: str) -> None:
        try:
            self.execute(sql, args)
        except self.integrity_errors:
            raise ConflictError(conflict) from None

    # teams and users
    def create_team(self, name: str) -> dict:
        self._insert("INSERT INTO teams VALUES (?, ?)", (name, time.time()), f"team {name!r} already exists")
        return {"name": name}

    def teams(self) -> list[dict]:
        return [{"name": n, "created": c} for n, c in self.execute("SELECT name, created FROM teams ORDER BY name")]

    def team_exists(self, name: str) -> bool:
        return bool(self.execute("SELECT 1 FROM teams WHERE name = ?", (name,)))

    def create_user(self, name: str, team: str, role: str) -> dict:
        if not self.team_exists(team):
            raise NotFoundError(f"team {team!r} not found", fix="create it first: seekstack teams create NAME")
        self._insert("INSERT INTO users (name, team, role, created) VALUES (?, ?, ?, ?)",
                     (name, team, role, time.time()),
                     f"user {name!r} already exists")
        return {"name": name, "team": team, "role": role}

    def users(self, team: str | None = None) -> list[dict]:
        sql, args = "SELECT name, team, role, created FROM users", ()
        if team is not None:
            sql, args = sql + " WHERE team = ?", (team,)
        return [{"name": n, "team": t, "role": r, "created": c} for n, t, r, c in self.execute(sql + " ORDER BY name", args)]

    def user(self, name: str) -> dict | None:
        rows = self.execute("SELECT name, team, role FROM users WHERE name = ?", (name,))
        return {"name": rows[0][0], "team": rows[0][1], "role": rows[0][2]} if rows else None

    def set_password(self, name: str, password_hash: str) -> None:
        self.execute("UPDATE users SET password = ? WHERE name = ?", (password_hash, name))

    def password(self, name: str) -> str | None:
        rows = self.execute("SELECT password FROM users WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def is_empty(self) -> bool:
        return self.execute("SELECT COUNT(*) FROM keys")[0][0] == 0

    # keys
    def add_key(self, kid: str, key_hash: str, name: str, user: str, models: list[str], endpoints: list[str],
                expires: float | None, role: str | None = None) -> KeyRecord:
        self.execute('INSERT INTO keys (id, hash, name, "user", models, endpoints, created, expires, role) '
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (kid, key_hash, name, user, json.dumps(models), json.dumps(endpoints), time.time(), expires, role))
        record = self.key(kid)
        assert record is not None
        return record

    _KEY_SELECT = ('SELECT k.id, k.hash, k.name, k."user", u.team, COALESCE(k.role, u.role), k.models, k.endpoints, '
                   'k.created, k.expires, k.revoked, k.last_used, u.role FROM keys k JOIN users u ON u.name = k."user"')

    def key(self, kid: str) -> KeyRecord | None:
        rows = self.execute(self._KEY_SELECT + " WHERE k.id = ?", (kid,))
        return _record(rows[0]) if rows else None

    def keys(self, team: str | None = None) -> list[KeyRecord]:
        sql, args = self._KEY_SELECT, ()
        if team is not None:
            sql, args = sql + " WHERE u.team = ?", (team,)
        return [_record(row) for row in self.execute(sql + " ORDER BY k.created", args)]

    def revoke_key(self, kid: str) -> None:
        self.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), kid))

    def touch_keys(self, last_used: dict[str, float]) -> None:
        self.executemany("UPDATE keys SET last_used = ? WHERE id = ?", [(t, k) for k, t in last_used.items()],
                         announce=False)

    # limits and usage
    def set_limits(self, scope: str, name: str, values: dict, imposed_rank: int = 0) -> None:
        fields = (*LIMIT_FIELDS, "imposed_rank")
        self.execute(f"INSERT INTO limits (scope, name, {', '.join(fields)}) VALUES (?, ?, {', '.join('?' * len(fields))}) "
                     f"ON CONFLICT (scope, name) DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in fields)}",
                     (scope, name, *(values.get(f) for f in LIMIT_FIELDS), imposed_rank))

    def limits(self) -> list[dict]:
        rows = self.execute(f"SELECT scope, name, {', '.join(LIMIT_FIELDS)}, imposed_rank FROM limits "
                            "ORDER BY scope, name")
        return [{"scope": r[0], "name": r[1], **dict(zip(LIMIT_FIELDS, r[2:-1])), "imposed_rank": r[-1]} for r in rows]

    def limit(self, scope: str, name: str) -> dict | None:
        return next((r for r in self.limits() if r["scope"] == scope and r["name"] == name), None)

    def add_usage(self, rows: list[tuple], mark: tuple[str, int] | None = None) -> None:
        """rows: (day, key_id, user, team, model, requests, prompt, completion, reasoning); with ``mark``
        (writer, audit seq), how far that writer's chain is now counted — in the same commit, all or none."""
        batches = [("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, key_id, model) DO UPDATE SET "
                    "requests = usage.requests + excluded.requests, "
                    "prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = usage.completion_tokens + excluded.completion_tokens, "
                    "reasoning_tokens = usage.reasoning_tokens + excluded.reasoning_tokens", rows)]
        if mark is not None:
            batches.append(("INSERT INTO usage_marks VALUES (?, ?) ON CONFLICT (writer) DO UPDATE SET seq = excluded.seq",
                            [mark]))
        self.execute_all(batches, announce=False)

    def usage_mark(self, writer: str) -> int | None:
        """The last audit seq of ``writer``'s chain counted into usage (None: never counted here)."""
        rows = self.execute("SELECT seq FROM usage_marks WHERE writer = ?", (writer,))
        return rows[0][0] if rows else None

    def usage(self, *, team: str | None = None, since_day: str | None = None) -> list[dict]:
        sql, args = ('SELECT day, key_id, "user", team, model, requests, prompt_tokens, completion_tokens, '
                     "reasoning_tokens FROM usage WHERE 1=1"), []
        if team is not None:
            sql, args = sql + " AND team = ?", [*args, team]
        if since_day is not None:
            sql, args = sql + " AND day >= ?", [*args, since_day]
        cols = ("day", "key_id", "user", "team", "model", "requests", "prompt_tokens", "completion_tokens", "reasoning_tokens")
        return [dict(zip(cols, r)) for r in self.execute(sql + ' ORDER BY day, team, "user", model', args)]


    # console sessions: stored by the hash of their token, never the token
    def add_session(self, sid: str, kid: str, now: float) -> None:
        self.execute("INSERT INTO sessions (id, key_id, created, last_seen) VALUES (?, ?, ?, ?)", (sid, kid, now, now))

    def session(self, sid: str) -> tuple[str, float, float, float | None] | None:
        """(key id, created, last seen, ended) of a session, or None."""
        rows = self.execute("SELECT key_id, created, last_seen, ended FROM sessions WHERE id = ?", (sid,))
        return tuple(rows[0]) if rows else None

    def touch_sessions(self, last_seen: dict[str, float]) -> None:
        self.executemany("UPDATE sessions SET last_seen = ? WHERE id = ? AND ended IS NULL",
                         [(t, sid) for sid, t in last_seen.items()], announce=False)

    def end_session(self, sid: str, now: float) -> None:
        self.execute("UPDATE sessions SET ended = ? WHERE id = ? AND ended IS NULL", (now, sid))

    def purge_sessions(self, before: float) -> None:
        """Forget sessions that ended, or were last seen, before ``before``."""
        self.execute("DELETE FROM sessions WHERE COALESCE(ended, last_seen) < ?", (before,))

    # what every gateway sharing this store must agree on
    def fleet_fact(self, name: str) -> str | None:
        rows = self.execute("SELECT value FROM fleet_facts WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def settle_fleet_fact(self, name: str, value: str) -> str:
        """Record ``value`` for ``name`` unless one is recorded already; return the one that holds
        (the first gateway's, when several start together)."""
        self.execute("INSERT INTO fleet_facts VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING", (name, value, time.time()),
                     announce=False)
        held = self.fleet_fact(name)
        assert held is not None
        return held

    # the gateways on this store (governance/roster.py): bookkeeping, never announced
    GATEWAY_COLUMNS = ("writer", "instance", "host", "address", "audit_dir", "version", "pid", "started", "seen",
                       "stopped", "policy")

    def gateway_started(self, writer: str, instance: str, host: str, address: str, audit_dir: str, version: str,
                        pid: int, policy: str) -> None:
        now = time.time()
        self.execute("INSERT INTO gateways (writer, instance, host, address, audit_dir, version, pid, started, seen, "
                     "stopped, policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (writer) DO UPDATE SET "
                     "instance = excluded.instance, host = excluded.host, address = excluded.address, "
                     "audit_dir = excluded.audit_dir, version = excluded.version, pid = excluded.pid, "
                     "started = excluded.started, seen = excluded.seen, stopped = NULL, policy = excluded.policy",
                     (writer, instance, host, address, audit_dir, version, pid, now, now, policy), announce=False)

    def gateway_seen(self, writer: str, instance: str) -> None:
        """The heartbeat (of this instance only: another process may have enrolled under ``writer`` since)."""
        self.execute("UPDATE gateways SET seen = ? WHERE writer = ? AND instance = ?", (time.time(), writer, instance),
                     announce=False)

    def gateway_stopped(self, writer: str, instance: str) -> None:
        now = time.time()
        self.execute("UPDATE gateways SET seen = ?, stopped = ? WHERE writer = ? AND instance = ?",
                     (now, now, writer, instance), announce=False)

    def gateways(self, writer: str | None = None) -> list[dict]:
        """Every gateway's row (or ``writer``'s alone), by writer."""
        where, args = ("WHERE writer = ?", (writer,)) if writer is not None else ("", ())
        cols = self.GATEWAY_COLUMNS
        return [dict(zip(cols, row)) for row in
                self.execute(f"SELECT {', '.join(cols)} FROM gateways {where} ORDER BY writer", args)]

    # the audit chains of the gateways sharing this store
    def register_audit_writer(self, writer: str, public_key: str) -> None:
        """Name a gateway's audit chain and its public signing key (once; the key may never change)."""
        rows = self.execute("SELECT public_key FROM audit_writers WHERE writer = ?", (writer,))
        if rows and rows[0][0] != public_key:
            raise ConfigError(f"audit writer {writer!r} is registered with another signing key",
                              fix="restore this chain's audit-signing.key, or give the new chain another "
                                  "audit-writer.id (keep the old chain as evidence)")
        if not rows:
            self.execute("INSERT INTO audit_writers VALUES (?, ?, ?) ON CONFLICT (writer) DO NOTHING",
                         (writer, public_key, time.time()), announce=False)

    def publish_audit_entry(self, writer: str, kind: str, count: int, head: str, ts: float, sig: str) -> None:
        self.execute("INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (writer, kind, count) "
                     "DO NOTHING", (writer, kind, count, head, ts, sig), announce=False)

    def audit_writers(self) -> dict[str, str]:
        """writer → its public signing key (base64)."""
        return dict(self.execute("SELECT writer, public_key FROM audit_writers ORDER BY writer"))

    def newest_audit_entries(self, writer: str, limit: int = 16) -> list[tuple[str, int, str, float, str]]:
        """The writer's ``limit`` newest published entries, newest first (a start compares its chain with them)."""
        return self.execute("SELECT kind, count, head, ts, sig FROM audit_checkpoints WHERE writer = ? "
                            "ORDER BY count DESC, ts DESC LIMIT ?", (writer, limit))

    def audit_entries(self, writer: str) -> list[tuple[str, int, str, float, str]]:
        """The writer's published entries: (kind, count, head, ts, sig), oldest first."""
        return self.execute("SELECT kind, count, head, ts, sig FROM audit_checkpoints WHERE writer = ? "
                            "ORDER BY count, ts", (writer,))


class SqliteIdentityStore(IdentityStore):
    """The embedded default: one file under the state directory (WAL), shared by the gateways
    and the CLI of one host. Another process's commit is seen through ``PRAGMA data_version``;
    whether it was an announced change, through the ``changes`` counter it moved."""

    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: Path):
        self.lock = threading.RLock()
        self.db = open_private(path, SCHEMA, "foreign_keys=ON")
        migrate(self.db, path)
        self._seen_version = self.db.execute("PRAGMA data_version").fetchone()[0]
        self._seen_generation = self._generation()

    def execute(self, sql: str, args: tuple | list = (), *, announce: bool = True) -> list[tuple]:
        with self.lock:
            if not announce or reads(sql):
                return self.db.execute(sql, args).fetchall()
            with transaction(self.db):
                rows = self.db.execute(sql, args).fetchall()
                generation = self.db.execute(ANNOUNCE).fetchone()[0]
            self._announced(generation)
            return rows

    def execute_all(self, batches: list[tuple[str, list[tuple]]], *, announce: bool = True) -> None:
        with self.lock:
            with transaction(self.db):  # one commit for the batch (autocommit would make one per row)
                for sql, rows in batches:
                    self.db.executemany(sql, rows)
                generation = self.db.execute(ANNOUNCE).fetchone()[0] if announce else None
            if generation is not None:
                self._announced(generation)

    def _announced(self, generation: int) -> None:
        """Our own change (committed) is not news to us — unless another's came before it unseen,
        which the next check must still report."""
        if generation - 1 == self._seen_generation:
            self._seen_generation = generation

    def _generation(self) -> int:
        return self.db.execute("SELECT generation FROM changes").fetchone()[0]

    def changed_elsewhere(self) -> bool:
        """(A few µs.) While a worker thread writes here — a batch, through its commit's fsync —
        the answer is no: the next request looks again."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            version = self.db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._seen_version:
                return False
            self._seen_version = version
            generation = self._generation()
        finally:
            self.lock.release()
        if generation == self._seen_generation:
            return False  # bookkeeping only
        self._seen_generation = generation
        return True

    def close(self) -> None:
        self.db.close()


ANNOUNCE = "UPDATE changes SET generation = generation + 1 WHERE id = 1 RETURNING generation"


def reads(sql: str) -> bool:
    """A statement that only reads (nothing to announce)."""
    return sql.lstrip()[:6].upper() == "SELECT"


def open_identity_store(settings) -> IdentityStore:
    """The governance database the settings name: PostgreSQL (``storage.url``), else SQLite in the state directory."""
    if settings.storage.url:
        from .store_pg import PostgresIdentityStore

        return PostgresIdentityStore(settings.storage.url)
    return SqliteIdentityStore(settings.state_path / "seekstack.db")


def _record(row) -> KeyRecord:
    kid, h, name, user, team, role, models, endpoints, created, expires, revoked, last_used, user_role = row
    return KeyRecord(kid, h, name, user, team, role, tuple(json.loads(models)), tuple(json.loads(endpoints)),
                     created, expires, revoked, last_used, user_role)
