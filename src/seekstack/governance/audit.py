"""The audit log: fail-closed, tamper-evident, group-committed.

Records live in SQLite (``<state_dir>/audit.db``, WAL, 0600), one row per record:
``seq`` (1, 2, 3 … with no gaps), the record as canonical JSON, and
``mac = HMAC-SHA256(chain key, previous mac ‖ record)``. Every ``CHECKPOINT_EVERY`` records
(and at shutdown) a checkpoint — count and head mac — is signed with Ed25519. So:

- an edited record breaks its own mac; a reordered one breaks the chain at that point;
- a deleted record leaves a gap in ``seq``;
- a truncated tail falls short of the last signed checkpoint.

``verify_log()`` names the first bad record. Keys are 0600 files beside the database
(``audit-chain.key``, ``audit-signing.key``); ``audit-signing.pub`` lets anyone check
checkpoints. Someone holding both private keys could rewrite history: copy the public key
and checkpoints off the machine (``seekstack audit export``) to close that gap.

Fail-closed: :meth:`AuditLog.append` returns only once the record is committed, and raises
:class:`~seekstack.errors.AuditUnavailableError` (503) when it cannot be — the gateway then
serves nothing. Records arriving in the same event-loop turn share one transaction (group
commit). The writer also refuses when the database file was removed or replaced under it.
Records carry metadata only — never prompt or completion text, never PII values.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import AuditUnavailableError
from .keys import write_secret_file
from .sqlite import open_private, open_readonly, transaction

log = logging.getLogger("seekstack.audit")

CHECKPOINT_EVERY = 1000
GENESIS = "0" * 64
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


def checkpoint_message(count: int, head: str) -> bytes:
    return f"seekstack-audit-checkpoint:{count}:{head}".encode()


def anchor_message(seq: int, mac: str) -> bytes:
    return f"seekstack-audit-anchor:{seq}:{mac}".encode()


@dataclass
class AuditKeys:
    chain_key: bytes
    signing: Ed25519PrivateKey
    public: Ed25519PublicKey

    @classmethod
    def load(cls, directory: Path) -> "AuditKeys":
        chain_file, signing_file, public_file = (directory / n for n in ("audit-chain.key", "audit-signing.key", "audit-signing.pub"))
        if not chain_file.exists():
            write_secret_file(chain_file, os.urandom(32))
        if not signing_file.exists():
            write_secret_file(signing_file, Ed25519PrivateKey.generate().private_bytes_raw())
        signing = Ed25519PrivateKey.from_private_bytes(signing_file.read_bytes())
        public = signing.public_key()
        if not public_file.exists():
            public_file.write_bytes(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
        return cls(chain_file.read_bytes(), signing, public)


class AuditLog:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / "audit.db"
        self.keys = AuditKeys.load(directory)
        self.db = _open(self.path)
        self._inode = self.path.stat().st_ino
        row = self.db.execute("SELECT seq, mac FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        self.seq, self.head = (row[0], row[1]) if row else (0, GENESIS)
        self._pending: list[tuple[dict[str, Any], asyncio.Future | None]] = []
        self._flush_scheduled = False
        self.broken: str | None = None

    # ------------------------------------------------------------ writing
    async def append(self, record: dict[str, Any], *, alone: bool = False) -> None:
        """Commit ``record``; raise AuditUnavailableError if it cannot be.

        Records that arrive in one loop turn share one commit (group commit, for load). A
        request that is ``alone`` — the caller knows nothing else is in flight — with nothing
        queued commits at once, without the two loop turns that collecting a group costs."""
        if alone and not self._pending:
            error = self._commit([record])
            if error is not None:
                raise error
            return
        future = asyncio.get_running_loop().create_future()
        self._enqueue(record, future)
        await future

    def append_nowait(self, record: dict[str, Any]) -> None:
        """Queue ``record``; a failure marks the log broken, which refuses every later request."""
        self._enqueue(record, None)

    def _enqueue(self, record: dict[str, Any], future: asyncio.Future | None) -> None:
        self._pending.append((record, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        error = self._commit([record for record, _ in batch])
        for _, future in batch:
            if future is not None and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _commit(self, records: list[dict[str, Any]]) -> AuditUnavailableError | None:
        """Write ``records`` in one commit; if that fails the log is broken from now on, and the error is returned."""
        try:
            self._write(records)
        except Exception as exc:  # disk full, file removed, database locked …
            self.broken = f"{type(exc).__name__}: {exc}"
            log.error("audit log unavailable (%s); refusing requests until it is restored", self.broken)
            return AuditUnavailableError("the audit log cannot be written, so the request was not served",
                                         fix="an operator must restore the audit store; retry after Retry-After")
        return None

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self.broken:
            raise RuntimeError(self.broken)
        try:
            if os.stat(self.path).st_ino != self._inode:
                raise RuntimeError("audit.db was replaced")
        except FileNotFoundError:
            raise RuntimeError("audit.db was removed") from None
        seq, head, rows = self.seq, self.head, []
        now = time.time()
        for record in records:
            seq += 1
            record = {"seq": seq, "ts": record.get("ts", now), **record}
            data = canonical(record)
            head = chain(self.keys.chain_key, head, data)
            rows.append((seq, record["ts"], data, head))
        checkpoint = seq // CHECKPOINT_EVERY > self.seq // CHECKPOINT_EVERY
        if len(rows) == 1 and not checkpoint:
            self.db.execute(INSERT, rows[0])  # autocommit: one statement is its own transaction
        else:
            with transaction(self.db):
                self.db.executemany(INSERT, rows)
                if checkpoint:
                    self._checkpoint(seq, head)
        self.seq, self.head = seq, head

    def _checkpoint(self, count: int, head: str) -> None:
        sig = base64.b64encode(self.keys.signing.sign(checkpoint_message(count, head))).decode()
        self.db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)", (count, head, time.time(), sig))

    def purge(self, before: float) -> int:
        """Delete the oldest records (those before ``before``) as a prefix of the chain.

        The last deleted record's seq and mac become the signed *anchor* where verification
        now starts, so retention never breaks ``verify``. Returns how many were deleted."""
        self._flush()
        row = self.db.execute("SELECT MAX(seq) FROM records WHERE ts < ?", (before,)).fetchone()
        last = row[0] if row and row[0] is not None else None
        if last is None:
            return 0
        last = min(last, self.seq - 1)  # never delete the head: the chain goes on from it
        if last < 1 or self.db.execute("SELECT 1 FROM records WHERE seq = ?", (last,)).fetchone() is None:
            return 0
        mac = self.db.execute("SELECT mac FROM records WHERE seq = ?", (last,)).fetchone()[0]
        sig = base64.b64encode(self.keys.signing.sign(anchor_message(last, mac))).decode()
        with transaction(self.db):
            first = self.db.execute("SELECT MIN(seq) FROM records").fetchone()[0]
            self.db.execute("INSERT OR REPLACE INTO anchor VALUES (1, ?, ?, ?, ?)", (last, mac, time.time(), sig))
            self.db.execute("DELETE FROM records WHERE seq <= ?", (last,))
            self.db.execute("DELETE FROM checkpoints WHERE count <= ?", (last,))
        return last - first + 1

    def close(self) -> None:
        self._flush()
        if not self.broken and self.seq:
            try:
                self._checkpoint(self.seq, self.head)
            except sqlite3.Error as exc:
                log.error("audit checkpoint at shutdown failed: %s", exc)
        self.db.close()


INSERT = "INSERT INTO records VALUES (?, ?, ?, ?)"


def _open(path: Path) -> sqlite3.Connection:
    return open_private(path, SCHEMA, "synchronous=NORMAL")  # autocommit; batches use transaction()


# ---------------------------------------------------------------- reading and verifying


def read_records(path: Path, *, since: float | None = None, until: float | None = None,
                 filters: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    db = open_readonly(path)
    try:
        sql, args = "SELECT data FROM records WHERE 1=1", []
        if since is not None:
            sql, args = sql + " AND ts >= ?", [*args, since]
        if until is not None:
            sql, args = sql + " AND ts < ?", [*args, until]
        for (data,) in db.execute(sql + " ORDER BY seq", args):
            record = json.loads(data)
            if all(str(record.get(k)) == v for k, v in (filters or {}).items()):
                yield record
    finally:
        db.close()


@dataclass
class Verdict:
    ok: bool
    records: int
    checkpoints: int
    first_bad: int | None = None
    problem: str = ""


def verify_log(directory: Path) -> Verdict:
    """Walk the chain and the signed checkpoints; name the first bad record."""
    keys = AuditKeys.load(directory)
    db = open_readonly(directory / "audit.db")
    try:
        head, expected, count, macs = GENESIS, 1, 0, {}
        anchor = db.execute("SELECT seq, mac, sig FROM anchor WHERE id = 1").fetchone()
        if anchor is not None:  # retention removed records up to here; the signed anchor vouches for them
            try:
                keys.public.verify(base64.b64decode(anchor[2]), anchor_message(anchor[0], anchor[1]))
            except (InvalidSignature, ValueError):
                return Verdict(False, 0, 0, anchor[0], "the retention anchor has a bad signature")
            head, expected, count = anchor[1], anchor[0] + 1, anchor[0]
        for seq, data, mac in db.execute("SELECT seq, data, mac FROM records ORDER BY seq"):
            if seq != expected:
                return Verdict(False, count, 0, expected, f"record {expected} is missing (next present is {seq})")
            try:
                inner = json.loads(data).get("seq")
            except ValueError:
                inner = None
            if inner != seq:
                return Verdict(False, count, 0, seq, f"record {seq} carries sequence number {inner}: moved")
            head = chain(keys.chain_key, head, data)
            if not hmac.compare_digest(head, mac):
                return Verdict(False, count, 0, seq, f"record {seq} does not match its chain mac: edited or reordered")
            macs[seq] = mac
            expected, count = seq + 1, count + 1
        checkpoints = db.execute("SELECT count, head, sig FROM checkpoints ORDER BY count").fetchall()
        for cp_count, cp_head, sig in checkpoints:
            try:
                keys.public.verify(base64.b64decode(sig), checkpoint_message(cp_count, cp_head))
            except (InvalidSignature, ValueError):
                return Verdict(False, count, len(checkpoints), cp_count, f"checkpoint at {cp_count} has a bad signature")
            if cp_count > count:
                return Verdict(False, count, len(checkpoints), count + 1,
                               f"the log ends at record {count} but a signed checkpoint covers {cp_count}: truncated")
            if macs.get(cp_count) != cp_head:
                return Verdict(False, count, len(checkpoints), cp_count, f"record {cp_count} differs from its signed checkpoint")
        return Verdict(True, count, len(checkpoints))
    finally:
        db.close()
