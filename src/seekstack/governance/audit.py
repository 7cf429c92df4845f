"""The audit log: fail-closed, tamper-evident, group-committed, recovering by itself.

Records live in SQLite (``<audit dir>/audit.db``, WAL, 0600), one row per record:
``seq`` (1, 2, 3 … with no gaps), the record as canonical JSON — every field, its time
included — and ``mac = HMAC-SHA256(chain key, previous mac ‖ record)``. The ``ts`` column
is only an index: whatever reads or deletes by time checks it against the record's own.

Checkpoints (count and head mac, signed with Ed25519) are written at the first record,
every ``CHECKPOINT_EVERY`` records or ``CHECKPOINT_SECONDS``, and at shutdown — into the
database *and* outside it (:mod:`.checkpoints`: an append-only file and the log stream).
``audit_verify.verify_log`` checks records against both, so deleting a tail together with
its checkpoint rows, or the whole database, is found. Keys are 0600 files beside the
database (``audit-chain.key``, ``audit-signing.key``); ``audit-signing.pub`` lets anyone
check signatures. A missing key is never made anew over an existing log.

Retention deletes only a prefix of the chain whose records it has verified, by their covered
time, and proves what it deleted: a signed anchor (last seq and mac), the same in the
checkpoint file, and a chained ``retention`` record with the count and first and last macs.
The walk runs in a process of its own (``python -m seekstack.governance.audit``); the anchor
moves in one small commit, and the records below it are deleted after, a small chunk at a
time — until then they are outside the chain.

Fail-closed: :meth:`AuditLog.append` returns only once the record is committed, and raises
:class:`~seekstack.errors.AuditUnavailableError` (503) when it cannot be. Records arriving
in the same event-loop turn share one transaction (group commit); a record nobody waits for
(a request's ``response`` record) waits up to ``LINGER_SECONDS`` to share the next. While the
store cannot be written — disk full, I/O errors, over ``max_bytes`` — every request is refused, ``unavailable``
says why (``/readyz`` reports it), and a write is tried again at most once a second: when it
succeeds, service resumes by itself. The state changes are logged once each. A database file
removed or replaced under the writer stays refused until an operator restarts it. SQLite maps
``audit.db-shm`` into memory: truncated under the writer, the next touch would kill the
process with SIGBUS, so before touching the database the writer checks its size and grows it
back (SQLite then rebuilds that index from the WAL).
Records carry metadata only — never prompt or completion text, never PII values.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import AuditUnavailableError
from ..threads import in_process
from . import checkpoints
from .checkpoints import CheckpointFile, Entry
from .keys import write_secret_file
from .sqlite import open_private, open_readonly, transaction

log = logging.getLogger("seekstack.audit")

CHECKPOINT_EVERY = 1000
CHECKPOINT_SECONDS = 60.0
LINGER_SECONDS = 0.02    # a record nobody waits for waits at most this long to share a commit
RETRY_SECONDS = 1.0      # while the store is unavailable, a write is tried again at most this often
BUDGET_CHECK_SECONDS = 1.0
GENESIS = "0" * 64
KEY_FILES = ("audit-chain.key", "audit-signing.key", "audit-signing.pub")
NEW_LOG_FIX = "to start a new log on purpose, move the audit directory aside (keep it as evidence)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, data TEXT NOT NULL, mac TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (count INTEGER PRIMARY KEY, head TEXT NOT NULL, ts REAL NOT NULL, sig TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS anchor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, mac TEXT NOT NULL,
                                   ts REAL NOT NULL, sig TEXT NOT NULL);
"""


def canonical(record: dict[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 as is — the same text as ``json.dumps(record, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)``, at a twentieth of its cost."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()


def chain(key: bytes, previous: str, data: str) -> str:
    return hmac.new(key, previous.encode() + data.encode(), hashlib.sha256).hexdigest()


class AuditKeyError(AuditUnavailableError):
    """A key of an existing audit log is missing: making a new one would hide the old log."""


@dataclass
class AuditKeys:
    chain_key: bytes
    signing: Ed25519PrivateKey
    public: Ed25519PublicKey

    @classmethod
    def load(cls, directory: Path, *, create: bool = False) -> "AuditKeys":
        """The log's keys; made only when ``create`` (a new log), otherwise a missing one is an error."""
        chain_file, signing_file, public_file = (directory / n for n in KEY_FILES)
        if create:
            if not chain_file.exists():
                write_secret_file(chain_file, os.urandom(32))
            if not signing_file.exists():
                write_secret_file(signing_file, Ed25519PrivateKey.generate().private_bytes_raw())
        missing = [f.name for f in (chain_file, signing_file) if not f.exists()]
        if missing:
            raise AuditKeyError(f"the audit log in {directory} exists but its {' and '.join(missing)} is missing, "
                                "so it can be neither checked nor continued",
                                fix=f"restore the key file from backup; {NEW_LOG_FIX}")
        signing = Ed25519PrivateKey.from_private_bytes(signing_file.read_bytes())
        public = signing.public_key()
        if not public_file.exists():
            public_file.write_bytes(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
        return cls(chain_file.read_bytes(), signing, public)


WRITER_FILE = "audit-writer.id"


def writer_id(directory: Path) -> str:
    """This chain's name among the gateways' chains: made once (host name and a random part), then kept."""
    path = directory / WRITER_FILE
    if not path.exists():
        import socket

        host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-.")[:40] or "gateway"
        write_secret_file(path, f"{host}-{os.urandom(4).hex()}".encode())
    return path.read_text().strip()


def log_exists(directory: Path) -> bool:
    """Whether a log was ever started here: its database or its checkpoint file is present."""
    return (directory / "audit.db").exists() or CheckpointFile(directory).exists()


class AuditLog:
    def __init__(self, directory: Path, *, max_bytes: int | None = None):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / "audit.db"
        self.sidecar = CheckpointFile(directory)
        fresh = not log_exists(directory)
        if fresh and (directory / KEY_FILES[0]).exists():
            raise AuditKeyError(f"the audit keys in {directory} remain but the log they sign (audit.db, "
                                f"{checkpoints.FILE_NAME}) is gone",
                                fix=f"restore the log from backup; {NEW_LOG_FIX}")
        if not fresh and not self.sidecar.exists():
            raise AuditUnavailableError(f"the audit log in {directory} has no {checkpoints.FILE_NAME}, the checkpoints "
                                        "that vouch for it outside the database",
                                        fix=f"restore the file from backup; {NEW_LOG_FIX}")
        self.keys = AuditKeys.load(directory, create=fresh)
        self.writer = writer_id(directory)
        self._witness = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-witness")
        self.on_vouch: Callable[[Entry], None] | None = None  # also publish each signed entry (the shared store)
        self.db = _open(self.path)
        self._inode = self.path.stat().st_ino
        self._shm = self.path.with_name(self.path.name + "-shm")
        self._shm_size = 0
        if fresh:
            self._vouch(self._entry("genesis", 0, GENESIS))
        self.seq, self.head = self._stored_head()
        row = self.db.execute("SELECT MAX(ts) FROM checkpoints").fetchone()
        self._checkpointed_at = row[0] if row and row[0] is not None else time.time()
        self._pending: list[tuple[dict[str, Any], asyncio.Future | None]] = []
        self._flush_scheduled = False
        self._linger: asyncio.TimerHandle | None = None  # the flush of records nobody waits for
        self.max_bytes = max_bytes
        self._budget_checked_at = 0.0
        self.unavailable: str | None = None  # why the store cannot be written now; None when it can
        self.diverged: str | None = None  # how the chain differs from what the shared store vouches for (audit_writers)
        self.permanent = False               # the file was removed or replaced: only an operator restores it
        self._retry_at = 0.0
        self._refused = 0

    def _stored_head(self) -> tuple[int, str]:
        row = self.db.execute("SELECT seq, mac FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        if row:
            return row[0], row[1]
        anchor = self.db.execute("SELECT seq, mac FROM anchor WHERE id = 1").fetchone()
        return (anchor[0], anchor[1]) if anchor else (0, GENESIS)

    def mac_at(self, seq: int) -> str | None:
        """The chain's head after record ``seq``, if the chain still holds it (at the retention anchor too)."""
        row = self.db.execute("SELECT mac FROM records WHERE seq = ?", (seq,)).fetchone()
        if row:
            return row[0]
        anchor = self.db.execute("SELECT seq, mac FROM anchor WHERE id = 1").fetchone()
        return anchor[1] if anchor and anchor[0] == seq else None

    def _entry(self, kind: str, count: int, head: str) -> Entry:
        return Entry(kind, count, head, time.time(), checkpoints.sign(self.keys.signing, kind, count, head), self.writer)

    def checkpoint_wal(self) -> None:
        """Copy committed WAL frames into the database, through a connection of its own (for a
        worker thread: the fsync stays off the event loop). PASSIVE: it never blocks the writer."""
        db = sqlite3.connect(self.path, timeout=0.05)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.OperationalError:
            pass  # busy now: the next one catches up
        finally:
            db.close()

    def _vouch(self, entry: Entry, *, wait: bool = True) -> None:
        """Write a signed entry where the database cannot reach it: the side file, the log stream,
        and (``on_vouch``) the shared store, where `audit verify --chains` finds every writer's.

        One witness thread writes them, in order. A routine checkpoint does not ``wait`` (its
        fsync and publication stay off the event loop; the database already holds it); genesis,
        retention anchors and the shutdown checkpoint wait for theirs (and everything before)."""
        done = self._witness.submit(self._witness_now, entry)
        if wait:
            done.result()

    def _witness_now(self, entry: Entry) -> None:
        try:
            self.sidecar.append(entry)
        except OSError as exc:
            log.error("audit %s at %d not written to %s: %s", entry.kind, entry.count, self.sidecar.path.name, exc)
            raise
        if self.on_vouch is not None:
            try:
                self.on_vouch(entry)
            except Exception as exc:  # the shared copy is a second witness; the file is the first
                log.warning("audit %s at %d not published to the shared store: %s", entry.kind, entry.count, exc)

    # ------------------------------------------------------------ writing
    async def append(self, record: dict[str, Any], *, alone: bool = False) -> None:
        """Commit ``record``; raise AuditUnavailableError if it cannot be.

        Records that arrive in one loop turn share one commit (group commit, for load). A
        request that is ``alone`` — the caller knows nothing else is in flight — commits at
        once, without the two loop turns that collecting a group costs, taking along the
        records queued before it (in order)."""
        if alone:
            batch = self._take()
            error = self._commit([*(queued for queued, _ in batch), record])
            _settle(batch, error)
            if error is not None:
                raise error
            return
        future = asyncio.get_running_loop().create_future()
        self._enqueue(record, future)
        await future

    def append_nowait(self, record: dict[str, Any]) -> None:
        """Queue ``record``; a failure makes the log unavailable, which refuses later requests until it recovers.

        Nobody waits for it, so it waits up to ``LINGER_SECONDS`` for a commit to share — the
        next request's, usually — instead of paying for one of its own: a request's
        ``response`` record rides on the next request's commit."""
        self._enqueue(record, None)

    def _enqueue(self, record: dict[str, Any], future: asyncio.Future | None) -> None:
        self._pending.append((record, future))
        if future is not None:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.flush)

    def _take(self) -> list[tuple[dict[str, Any], asyncio.Future | None]]:
        """What is queued, now to be committed (a scheduled flush then finds nothing)."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        batch, self._pending = self._pending, []
        return batch

    def flush(self) -> None:
        """Commit what is queued now (a record nobody waits for need not linger)."""
        self._flush_scheduled = False
        batch = self._take()
        if batch:
            _settle(batch, self._commit([record for record, _ in batch]))

    def _commit(self, records: list[dict[str, Any]]) -> AuditUnavailableError | None:
        """Write ``records`` in one commit, or return the error that refuses them.

        While unavailable, a write is tried again only every RETRY_SECONDS (and never after
        the file was removed or replaced); the others are refused at once."""
        now = time.monotonic()
        if self.unavailable is not None and (self.permanent or now < self._retry_at):
            self._refused += len(records)
            return _refusal()
        try:
            self._check_file()
            self._check_budget(now)
            self._write(records)
        except Exception as exc:  # disk full, I/O error, over budget, file removed …
            self._refused += len(records)
            self._retry_at = now + RETRY_SECONDS
            self.permanent = isinstance(exc, _StoreGone)
            self._become_unavailable(_reason(exc))
            return _refusal()
        if self.unavailable is not None:
            log.warning("audit log writable again after %s; serving requests (%d refused meanwhile)",
                        self.unavailable, self._refused)
            self.unavailable, self._refused = None, 0
        return None

    def try_recover(self) -> bool:
        """While unavailable, try a write — a record of the outage itself; True once the store takes it.

        Called periodically, so a gateway that a load balancer stopped sending requests to
        (``/readyz`` says not ready) still comes back by itself."""
        if self.unavailable is None:
            return True
        if self.permanent:
            return False
        self.flush()
        return self._commit([{"event": "audit_outage", "decision": "allow", "reason": self.unavailable,
                              "refused": self._refused}]) is None

    def _become_unavailable(self, reason: str) -> None:
        if reason != self.unavailable:  # logged once per change of state, never nested
            log.error("audit log unavailable: %s; refusing requests until it can be written again", reason)
            self.unavailable = reason

    def _guard_shm(self) -> None:
        """Grow audit.db-shm back if it shrank under us: SQLite's memory map of it would fault (SIGBUS)."""
        try:
            size = os.stat(self._shm).st_size
        except FileNotFoundError:
            return  # SQLite has not made it yet (or it was removed: the mapping itself stays valid)
        if size < self._shm_size:
            os.truncate(self._shm, self._shm_size)
            log.error("audit.db-shm shrank from %d to %d bytes under the gateway; grew it back (SQLite rebuilds "
                      "its index from the WAL); find out who touched the audit store", self._shm_size, size)
        else:
            self._shm_size = size

    def _check_file(self) -> None:
        try:
            if os.stat(self.path).st_ino != self._inode:
                raise _StoreGone("audit.db was replaced")
        except FileNotFoundError:
            raise _StoreGone("audit.db was removed") from None
        self._guard_shm()
        if self.unavailable is not None:  # recovering: the chain goes on from what was committed
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self.seq, self.head = self._stored_head()

    def _check_budget(self, now: float) -> None:
        if self.max_bytes is None or (self.unavailable is None and now - self._budget_checked_at < BUDGET_CHECK_SECONDS):
            return
        self._budget_checked_at = now
        used = self.used_bytes()
        if used >= self.max_bytes:
            raise _OverBudget(f"the audit store holds {used} bytes, its budget audit.max_bytes is {self.max_bytes}")

    def used_bytes(self) -> int:
        """Bytes the records take: the database's pages as the writer sees them (committed WAL frames
        included, the WAL file's own size not — it is a transient copy), less the free pages
        retention left, which are reused."""
        self._guard_shm()
        pages, free, size = (self.db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size

    def _write(self, records: list[dict[str, Any]]) -> None:
        seq, head, rows = self.seq, self.head, []
        now = time.time()
        for record in records:
            seq += 1
            record = {"seq": seq, "ts": record.get("ts", now), **record}
            data = canonical(record)
            head = chain(self.keys.chain_key, head, data)
            rows.append((seq, record["ts"], data, head))
        checkpoint = (self.seq == 0 or seq // CHECKPOINT_EVERY > self.seq // CHECKPOINT_EVERY
                      or now - self._checkpointed_at >= CHECKPOINT_SECONDS)
        entry = self._entry("checkpoint", seq, head) if checkpoint else None
        if entry is None and len(rows) <= ONE_STATEMENT:  # autocommit: one statement is its own transaction
            self.db.execute(_insert(len(rows)), [value for row in rows for value in row])
        else:
            with transaction(self.db):
                self.db.executemany(INSERT, rows)
                if entry is not None:
                    self.db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                                    (entry.count, entry.head, entry.ts, entry.sig))
        self.seq, self.head = seq, head
        if entry is not None:
            self._checkpointed_at = now
            self._vouch(entry, wait=False)  # after the commit: the file never vouches for what the database lacks

    # ------------------------------------------------------------ retention
    def retention_plan(self, before: float) -> "RetentionPlan | None":
        """The verified prefix of records whose own (chained) time is before ``before``; never the head.

        Reads through its own connection, so it may run in a worker thread; raises
        :class:`AuditTamperedError` rather than delete anything past a record that fails its check."""
        return plan_retention(self.path, self.keys.chain_key, before, self.seq)

    async def retention_plan_apart(self, before: float) -> "RetentionPlan | None":
        """:meth:`retention_plan` in a process of its own: the walk (HMAC and JSON per record, a day
        of records or more) holds no lock the event loop needs — in a thread it would share the
        interpreter lock, as verify did. If that process cannot run, the walk runs in a thread."""
        status, output = await in_process("seekstack.governance.audit", str(self.path.parent), repr(before),
                                          str(self.seq))
        if status != 0:
            log.warning("the retention planner process failed (exit %s); planning in a thread", status)
            return await asyncio.to_thread(self.retention_plan, before)
        answer = json.loads(output)
        if "tampered" in answer:
            raise AuditTamperedError(answer["tampered"], fix=answer["fix"])
        return RetentionPlan(**answer["plan"]) if answer["plan"] else None

    def apply_retention(self, plan: "RetentionPlan") -> dict[str, Any]:
        """Move the signed anchor past the planned prefix, noted first in the checkpoint file; returns the proof.

        From then on the records at or below the anchor are outside the chain — verify, reads
        and the next plan start above it — and :meth:`delete_retained` removes them a small
        chunk at a time: a day's records deleted in one transaction would hold the event loop
        (and every stream on it) for seconds. A plan made before another retention run moved
        the anchor is stale: it deletes nothing (the anchor only moves forward, from exactly
        where it is)."""
        self.flush()
        self._guard_shm()
        anchor = self.db.execute("SELECT seq FROM anchor WHERE id = 1").fetchone()
        if plan.first_seq != (anchor[0] if anchor else 0) + 1:
            return {"deleted": 0}
        entry = self._entry("retention", plan.last_seq, plan.last_mac)
        self._vouch(entry)
        with transaction(self.db):
            self.db.execute("INSERT OR REPLACE INTO anchor VALUES (1, ?, ?, ?, ?)",
                            (entry.count, entry.head, entry.ts, entry.sig))
            self.db.execute("DELETE FROM checkpoints WHERE count <= ?", (plan.last_seq,))
        return plan.proof()

    async def delete_retained(self, chunk: int = 500, pause: float = 0.005) -> int:
        """Delete the records at or below the anchor (left by :meth:`apply_retention`, or by a run
        cut short), ``chunk`` at a time, ``pause`` seconds apart, through the writer's own
        connection: each chunk holds the event loop about a millisecond, and the fail-closed
        writer never waits for another connection's lock (it gives up after 50 ms). Returns how
        many it deleted; a failure stops it, and the next run goes on."""
        deleted = 0
        try:
            while gone := self._delete_retained_chunk(chunk):
                deleted += gone
                await asyncio.sleep(pause)
        except sqlite3.Error as exc:
            log.warning("retention stopped deleting after %d records (%s); the next run goes on", deleted, exc)
        return deleted

    def _delete_retained_chunk(self, chunk: int) -> int:
        self._guard_shm()
        anchor = self.db.execute("SELECT seq FROM anchor WHERE id = 1").fetchone()
        lowest = self.db.execute("SELECT MIN(seq) FROM records").fetchone()[0]
        if anchor is None or lowest is None or lowest > anchor[0]:
            return 0
        return self.db.execute("DELETE FROM records WHERE seq <= ?", (min(lowest + chunk - 1, anchor[0]),)).rowcount

    def purge(self, before: float) -> int:
        """Retention in one call (tests and tools; the gateway plans in a process of its own and
        deletes gradually). Returns the count retired."""
        plan = self.retention_plan(before)
        proof = self.apply_retention(plan) if plan is not None else {"deleted": 0}
        while self._delete_retained_chunk(5000):
            pass
        return proof["deleted"]

    def close(self) -> None:
        self.flush()
        self._guard_shm()
        if self.unavailable is None and self.seq:
            try:
                entry = self._entry("checkpoint", self.seq, self.head)
                self.db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                                (entry.count, entry.head, entry.ts, entry.sig))
                self._vouch(entry)
            except (sqlite3.Error, OSError) as exc:
                log.error("audit checkpoint at shutdown failed: %s", type(exc).__name__)
        self._witness.shutdown(wait=True)
        self.db.close()


def plan_retention(path: Path, chain_key: bytes, before: float, below_seq: int) -> "RetentionPlan | None":
    """The verified prefix of the records in ``path`` above the anchor and below ``below_seq`` (the
    head, never retired) whose own, chained time is before ``before``; None when there is none."""
    db = open_readonly(path)
    try:
        db.execute("BEGIN")
        anchor = db.execute("SELECT seq, mac FROM anchor WHERE id = 1").fetchone()
        head, expected = (anchor[1], anchor[0] + 1) if anchor else (GENESIS, 1)
        first = last = None
        rows = db.execute("SELECT seq, ts, data, mac FROM records WHERE seq > ? AND seq < ? ORDER BY seq",
                          (expected - 1, below_seq))
        for seq, ts, data, mac in rows:
            record = json.loads(data)
            head = chain(chain_key, head, data)
            if seq != expected or record.get("seq") != seq or record.get("ts") != ts or head != mac:
                raise AuditTamperedError(f"record {expected} fails its check; retention deleted nothing",
                                         fix="run `seekstack audit verify` and keep this copy as evidence")
            if not isinstance(record.get("ts"), (int, float)) or record["ts"] >= before:
                break
            first = first or (seq, mac)
            last, expected = (seq, mac), seq + 1
        return None if last is None else RetentionPlan(first[0], first[1], last[0], last[1])
    finally:
        db.close()


@dataclass(frozen=True)
class RetentionPlan:
    first_seq: int
    first_mac: str
    last_seq: int
    last_mac: str

    def proof(self) -> dict[str, Any]:
        return {"deleted": self.last_seq - self.first_seq + 1, "first_seq": self.first_seq, "first_mac": self.first_mac,
                "last_seq": self.last_seq, "last_mac": self.last_mac}


class AuditTamperedError(AuditUnavailableError):
    """The log fails its own check where an operation needed it intact."""


class _StoreGone(Exception):
    pass


class _OverBudget(Exception):
    pass


def _reason(exc: Exception) -> str:
    """One line, whatever the exception: never the text of an earlier refusal nested inside."""
    if isinstance(exc, (_StoreGone, _OverBudget)):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"[:200]


def _settle(batch: list[tuple[dict[str, Any], asyncio.Future | None]], error: AuditUnavailableError | None) -> None:
    """Tell whoever waits for a record of ``batch`` how its commit went."""
    for _, future in batch:
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def _refusal() -> AuditUnavailableError:
    return AuditUnavailableError("the audit log cannot be written, so the request was not served",
                                 fix="an operator must restore the audit store (see /readyz); retry after Retry-After")


INSERT = "INSERT INTO records VALUES (?, ?, ?, ?)"
ONE_STATEMENT = 64  # records a commit writes in one multi-row INSERT (no BEGIN … COMMIT round trips)


@functools.lru_cache(maxsize=ONE_STATEMENT)
def _insert(rows: int) -> str:
    return "INSERT INTO records VALUES " + ", ".join(["(?, ?, ?, ?)"] * rows)


def _open(path: Path) -> sqlite3.Connection:
    # Autocommit; batches use transaction(). The writer runs on the event loop and is the log's
    # only writer: a lock held by another process fails the write at once (fail-closed, retried
    # every second) instead of stalling every stream for the default five seconds.
    # No automatic WAL checkpoints on the writer: copying the WAL into the database ends in an
    # fsync, a stall of every stream if the event loop did it. The gateway checkpoints from a
    # worker thread instead (:meth:`AuditLog.checkpoint_wal`); a last close checkpoints too.
    return open_private(path, SCHEMA, "synchronous=NORMAL", "wal_autocheckpoint=0", busy_timeout=0.05)


# ---------------------------------------------------------------- reading and verifying


def _field(name: str) -> str:
    return f"json_extract(data, '$.{name}')"


# Usage rows — (day, key id, user, team, model, requests, prompt, completion, reasoning) — of the
# response records in a range of seq: answers the engine gave (a refusal before it is none).
_USAGE = f"""
SELECT strftime('%Y-%m-%d', ts, 'unixepoch'), IFNULL({_field("key_id")}, '-'), MAX(IFNULL({_field("user")}, '-')),
       MAX(IFNULL({_field("team")}, '-')), {_field("model")}, COUNT(*), SUM(IFNULL({_field("prompt_tokens")}, 0)),
       SUM(IFNULL({_field("completion_tokens")}, 0)), SUM(IFNULL({_field("reasoning_tokens")}, 0))
FROM records
WHERE seq > ? AND seq <= ? AND {_field("event")} = 'response' AND {_field("model")} IS NOT NULL
  AND ({_field("status")} < 400 OR IFNULL({_field("prompt_tokens")}, 0) + IFNULL({_field("completion_tokens")}, 0) > 0)
GROUP BY 1, 2, 5
"""


def usage_since(path: Path, after_seq: int) -> tuple[list[tuple], int]:
    """The usage rows of the response records after ``after_seq``, and the last seq they cover.

    Counted inside SQLite (its JSON functions), so a worker thread doing it holds the
    interpreter lock for a few calls, not for every record."""
    db = open_readonly(path)
    try:
        last = db.execute("SELECT MAX(seq) FROM records").fetchone()[0]
        if last is None or last <= after_seq:
            return [], after_seq
        return db.execute(_USAGE, (after_seq, last)).fetchall(), last
    finally:
        db.close()


def read_records(path: Path, *, since: float | None = None, until: float | None = None,
                 filters: dict[str, str] | None = None, seq: int | None = None, before_seq: int | None = None,
                 newest_first: bool = False) -> Iterator[dict[str, Any]]:
    db = open_readonly(path)
    try:
        sql, args = "SELECT data FROM records WHERE seq > IFNULL((SELECT seq FROM anchor WHERE id = 1), 0)", []
        if since is not None:
            sql, args = sql + " AND ts >= ?", [*args, since]
        if until is not None:
            sql, args = sql + " AND ts < ?", [*args, until]
        if seq is not None:
            sql, args = sql + " AND seq = ?", [*args, seq]
        if before_seq is not None:
            sql, args = sql + " AND seq < ?", [*args, before_seq]
        for (data,) in db.execute(sql + (" ORDER BY seq DESC" if newest_first else " ORDER BY seq"), args):
            record = json.loads(data)
            if all(str(record.get(k)) == v for k, v in (filters or {}).items()):
                yield record
    finally:
        db.close()


if __name__ == "__main__":  # python -m seekstack.governance.audit DIR BEFORE BELOW_SEQ: a retention plan as JSON
    import dataclasses

    _directory = Path(sys.argv[1])
    try:
        _plan = plan_retention(_directory / "audit.db", AuditKeys.load(_directory).chain_key, float(sys.argv[2]),
                               int(sys.argv[3]))
        print(json.dumps({"plan": dataclasses.asdict(_plan) if _plan else None}))
    except AuditTamperedError as _exc:
        print(json.dumps({"tampered": _exc.message, "fix": _exc.fix}))
