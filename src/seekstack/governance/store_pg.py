"""The identity store in PostgreSQL: for gateways on several hosts sharing one database.

The queries are :class:`~.store.IdentityStore`'s; here are the connection, the migrations
and the change feed.

- **Migrations**: ordered steps that bring the schema to the same versions as SQLite's,
  recorded in ``seekstack_schema``; applied at start under an advisory lock (gateways may
  start together), each in one transaction with its version. A database newer than this code
  knows is refused rather than misread.
- **Change feed**: every announced write (all but bookkeeping: last uses, usage, audit
  checkpoints) sends ``NOTIFY seekstack_identity`` in its own transaction (so a listener
  hears of it only once it is committed). Each store listens on a connection of
  its own in a thread; :meth:`changed_elsewhere` is then a flag read, and a gateway drops its
  key and limit caches before the next request it authenticates — a revoked key is refused
  on every gateway within milliseconds. While the listening connection is down, every call
  says "changed", so nothing stale is served; it reconnects by itself.
- **Outages**: a statement on a lost connection (the server restarted, failed over, or
  ended the session) is refused as :class:`StorageUnavailableError` (503), and so is every
  statement after it until the feed's thread has opened a new connection — it tries every
  half second, never on the event loop. :attr:`unavailable` says why meanwhile (``/readyz``).
- **Silence**: a server that stops answering (hung, or cut off by the network) would hold a
  statement — and the event loop, for a key lookup — for as long as TCP takes to give up
  (minutes to hours). So a watchdog thread drops the connection under a statement that has
  waited :data:`STATEMENT_DEADLINE_S`; and every connection has
  TCP keepalives, so one that a firewall or a partition silently cut is noticed within
  seconds — the change feed's too (until then its gateway would trust its cached keys).

psycopg connections are thread-safe; statements are short (indexed lookups, batched writes).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from ..errors import ConfigError, StorageUnavailableError, first_line
from .store import IdentityStore, SCHEMA_VERSION, reads

log = logging.getLogger("seekstack.governance")

CHANNEL = "seekstack_identity"
STATEMENT_DEADLINE_S = 5.0  # a statement with no answer for this long has its connection dropped
# libpq: probe an idle connection after 5 s, every 2 s, give up after 3 unanswered; sent data
# not acknowledged for 10 s fails the connection too
CONNECTION_OPTIONS = {"autocommit": True, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                      "keepalives_count": 3, "tcp_user_timeout": 10_000}
LOCK_ID = 0x5EE45AC  # pg_advisory_xact_lock: one migrating gateway at a time

# Step i brings the database to version i + 1 (the same versions as the SQLite store's).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE teams (name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL);
    CREATE TABLE users (name TEXT PRIMARY KEY, team TEXT NOT NULL REFERENCES teams(name), role TEXT NOT NULL,
                        created DOUBLE PRECISION NOT NULL);
    CREATE TABLE keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL, name TEXT NOT NULL,
                       "user" TEXT NOT NULL REFERENCES users(name), models TEXT NOT NULL, endpoints TEXT NOT NULL,
                       created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION, revoked DOUBLE PRECISION,
                       last_used DOUBLE PRECISION);
    CREATE TABLE limits (scope TEXT NOT NULL, name TEXT NOT NULL, rpm BIGINT, tpm BIGINT, concurrent BIGINT,
                         daily_tokens BIGINT, monthly_tokens BIGINT, PRIMARY KEY (scope, name));
    CREATE TABLE usage (day TEXT NOT NULL, key_id TEXT NOT NULL, "user" TEXT NOT NULL, team TEXT NOT NULL,
                        model TEXT NOT NULL, requests BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL,
                        completion_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL,
                        PRIMARY KEY (day, key_id, model));
    """,
    # 2: a key may carry a lesser role than its user's; a limit remembers the rank that imposed it
    "ALTER TABLE keys ADD COLUMN role TEXT; ALTER TABLE limits ADD COLUMN imposed_rank INTEGER NOT NULL DEFAULT 0;",
    # 3: every gateway's audit chain is registered, and its signed checkpoints published, here
    """
    CREATE TABLE audit_writers (writer TEXT PRIMARY KEY, public_key TEXT NOT NULL, registered DOUBLE PRECISION NOT NULL);
    CREATE TABLE audit_checkpoints (writer TEXT NOT NULL REFERENCES audit_writers(writer), kind TEXT NOT NULL,
                                    count BIGINT NOT NULL, head TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
                                    sig TEXT NOT NULL, PRIMARY KEY (writer, kind, count));
    """,
    # 4: console sign-in sessions (the token's hash only), shared so that a sign-out ends it on every gateway
    """
    CREATE TABLE sessions (id TEXT PRIMARY KEY, key_id TEXT NOT NULL REFERENCES keys(id),
                           created DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
                           ended DOUBLE PRECISION);
    """,
    # 5: a user may have a console password (scrypt of an HMAC under the pepper)
    "ALTER TABLE users ADD COLUMN password TEXT;",
    # 6: how far each gateway's audit chain has been counted into usage (moved in the same commit as the rows)
    "CREATE TABLE usage_marks (writer TEXT PRIMARY KEY, seq BIGINT NOT NULL);",
    # 7: SQLite's change counter; here the change feed is NOTIFY, the table keeps the versions in step
    "CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), generation BIGINT NOT NULL); "
    "INSERT INTO changes VALUES (1, 0);",
    # 8: what every gateway on this database must agree on (the fingerprint of the pepper keys are hashed with)
    "CREATE TABLE fleet_facts (name TEXT PRIMARY KEY, value TEXT NOT NULL, set_at DOUBLE PRECISION NOT NULL);",
    # 9: the gateways on this database: each by its audit writer, with where it runs and when it was last seen
    """
    CREATE TABLE gateways (writer TEXT PRIMARY KEY, host TEXT NOT NULL, address TEXT NOT NULL, audit_dir TEXT NOT NULL,
                           version TEXT NOT NULL, pid BIGINT NOT NULL, started DOUBLE PRECISION NOT NULL,
                           seen DOUBLE PRECISION NOT NULL, stopped DOUBLE PRECISION);
    """,
    # 10: which process writes each chain now (a copy of an audit directory is another process under
    # the same writer), and the fingerprints of the settings a request's answer depends on
    "ALTER TABLE gateways ADD COLUMN instance TEXT; ALTER TABLE gateways ADD COLUMN policy TEXT;",
)
assert len(MIGRATIONS) == SCHEMA_VERSION, "PostgreSQL and SQLite schemas are versioned together"


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise ConfigError("storage.url names PostgreSQL, but the psycopg package is not installed",
                          fix="pip install 'seekstack[postgres]'") from None
    return psycopg


def migrate(conn, url: str) -> int:
    """Bring the database to SCHEMA_VERSION; return the version it had (0: empty)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        conn.execute("CREATE TABLE IF NOT EXISTS seekstack_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM seekstack_schema").fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{_redacted(url)} has schema version {version}, newer than this seekstack knows "
                              f"({SCHEMA_VERSION})", fix="run the seekstack version that wrote it, or a newer one")
        for step in range(version, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[step])
        if row is None:
            conn.execute("INSERT INTO seekstack_schema VALUES (%s)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE seekstack_schema SET version = %s", (SCHEMA_VERSION,))
    return version


class PostgresIdentityStore(IdentityStore):
    def __init__(self, url: str, connect_timeout: float = 5.0):
        psycopg = _psycopg()
        self.url = url
        self.lock = threading.RLock()
        self.integrity_errors = (psycopg.errors.IntegrityError,)
        self._operational = (psycopg.OperationalError,)
        try:
            self.conn = psycopg.connect(url, connect_timeout=int(connect_timeout), **CONNECTION_OPTIONS)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to the governance database {_redacted(url)}: {first_line(exc)}",
                              fix="check storage.url, that the server runs, and its pg_hba.conf") from None
        migrate(self.conn, url)
        self._lost: str | None = None  # why the statements' connection is gone; the feed's thread replaces it
        self._waiting_since: float | None = None  # when the statement in progress was sent
        self._changed = threading.Event()
        self._listening = threading.Event()
        self._closed = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="seekstack-identity-feed", daemon=True)
        self._listener.start()
        # its own thread: the feed's may itself be waiting on a silent server (a connect takes up to 5 s)
        self._watchdog = threading.Thread(target=self._watch_statements, name="seekstack-db-watchdog", daemon=True)
        self._watchdog.start()
        self._listening.wait(connect_timeout)

    # ------------------------------------------------------------ statements
    @property
    def unavailable(self) -> str | None:
        """Why statements cannot run now. (The change feed being down is not a reason: every
        request then reads its key again, which is slower but right.)"""
        return None if self._lost is None else f"the governance database is unavailable: {self._lost}"

    def _usable(self) -> None:
        """Refuse at once while the connection is lost (the feed's thread is opening another)."""
        if self._lost is not None:
            raise StorageUnavailableError(f"the governance database is unavailable: {self._lost}; reconnecting")

    def _failed(self, exc: Exception) -> StorageUnavailableError:
        reason = first_line(exc)
        if self.conn.closed or self.conn.broken:
            if self._lost is None:
                log.warning("governance database connection lost (%s); reconnecting", reason)
            self._lost = reason
        return StorageUnavailableError(f"the governance database is unavailable: {reason}")

    def execute(self, sql: str, args: tuple | list = (), *, announce: bool = True) -> list[tuple]:
        sql = sql.replace("?", "%s")
        announced = announce and not reads(sql)
        with self.lock:
            self._usable()
            try:
                return self._statement(sql, args, announced)
            except StorageUnavailableError:
                if announced or self._lost is None:
                    raise
            # A read on a connection the server had closed meanwhile (a restart, a failover, an idle
            # timeout) ran nothing: once more on a new connection, so the first request after a
            # restart is served. (A write is not tried again: its commit may have happened.)
            self._replace(self._connect())
            return self._statement(sql, args, announced)

    def _statement(self, sql: str, args: tuple | list, announced: bool) -> list[tuple]:
        self._waiting_since = time.monotonic()
        try:
            if not announced:
                cursor = self.conn.execute(sql, args)
                return cursor.fetchall() if cursor.description else []
            with self.conn.transaction():
                cursor = self.conn.execute(sql, args)
                self.conn.execute(f"NOTIFY {CHANNEL}")
                return cursor.fetchall() if cursor.description else []
        except self._operational as exc:
            raise self._failed(exc) from None
        finally:
            self._waiting_since = None

    def execute_all(self, batches: list[tuple[str, list[tuple]]], *, announce: bool = True) -> None:
        batches = [(sql, rows) for sql, rows in batches if rows]
        if not batches:
            return
        with self.lock:
            self._usable()
            self._waiting_since = time.monotonic()
            try:
                with self.conn.transaction():
                    with self.conn.cursor() as cursor:
                        for sql, rows in batches:
                            cursor.executemany(sql.replace("?", "%s"), rows)
                    if announce:
                        self.conn.execute(f"NOTIFY {CHANNEL}")
            except self._operational as exc:
                raise self._failed(exc) from None
            finally:
                self._waiting_since = None

    # ------------------------------------------------------------ change feed
    def changed_elsewhere(self) -> bool:
        if not self._listening.is_set():
            return True  # no feed now: assume anything may have changed
        if self._changed.is_set():
            self._changed.clear()
            return True
        return False

    def _listen(self) -> None:
        psycopg = _psycopg()
        while not self._closed.is_set():
            try:
                with psycopg.connect(self.url, connect_timeout=5, **CONNECTION_OPTIONS) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    self._changed.set()  # whatever happened while not listening
                    while not self._closed.is_set():
                        if self._lost is not None:
                            self._reconnect()
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._changed.set()
            except Exception as exc:  # the server went away: say "changed" until listening again
                if self._closed.is_set():
                    return
                if self._listening.is_set():
                    log.warning("governance change feed lost (%s); retrying", first_line(exc))
                self._listening.clear()
                time.sleep(0.5)

    def _watch_statements(self) -> None:
        while not self._closed.wait(0.5):
            self._watch()

    def _watch(self) -> None:
        """Drop the statements' connection under a statement that has waited past the deadline:
        the statement then fails (503), instead of waiting on TCP for as long as it takes."""
        since = self._waiting_since
        if since is None or time.monotonic() - since < STATEMENT_DEADLINE_S:
            return
        log.warning("the governance database has not answered a statement in %.0f s; dropping its connection",
                    STATEMENT_DEADLINE_S)
        self._waiting_since = None
        try:
            with socket.socket(fileno=os.dup(self.conn.pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # closed meanwhile (psycopg says so, or the socket does)
            pass

    def _reconnect(self) -> None:
        """Replace the statements' lost connection (on the feed's thread; tried again next turn if it fails)."""
        try:
            fresh = self._connect()
        except StorageUnavailableError:
            return
        with self.lock:
            self._replace(fresh)
        self._changed.set()  # whatever happened meanwhile

    def _connect(self):
        try:
            return _psycopg().connect(self.url, connect_timeout=5, **CONNECTION_OPTIONS)
        except Exception as exc:
            raise StorageUnavailableError(f"the governance database is unavailable: {first_line(exc)}") from None

    def _replace(self, fresh) -> None:
        """Put ``fresh`` in place of the lost connection (the caller holds the lock)."""
        lost, self.conn, self._lost = self.conn, fresh, None
        lost.close()
        log.warning("governance database connection restored")

    def close(self) -> None:
        self._closed.set()
        self._listener.join(2)
        self._watchdog.join(2)
        self.conn.close()


def _redacted(url: str) -> str:
    """The URL without its password (never logged or shown)."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.partition(':')[0]}@{host}"
