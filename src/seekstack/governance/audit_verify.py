"""``verify_log()``: check an audit log against its chain key, its signatures and the checkpoints kept outside it.

It fails, naming the first problem, on:

- an edited field (the record's mac, or its ``ts`` index differing from the record's own time);
- a deleted, reordered or inserted record (a gap in ``seq``, a sequence number that moved, a broken chain);
- a truncated tail: shorter than a checkpoint in the database, in the checkpoint file or in
  a shipped copy of the log stream (``external``);
- checkpoint rows deleted from the database while the checkpoint file still lists them;
- a retention anchor that no signed retention entry vouches for;
- an empty or missing database, or a missing checkpoint file, where a chain key exists;
- a missing chain or signing key (they are never made anew over a log).

What it cannot see: records appended after the newest checkpoint and then removed (at most
``CHECKPOINT_EVERY`` records or ``CHECKPOINT_SECONDS`` of them) — unless a shipped copy of the
log stream is newer; and a rewrite by someone holding the signing key who also rewrites every
copy of the checkpoints — which the copy shipped to write-once storage prevents.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..threads import in_process
from . import checkpoints
from .audit import GENESIS, KEY_FILES, chain, log_exists
from .checkpoints import Entry
from .sqlite import open_readonly


@dataclass
class Verdict:
    ok: bool
    records: int
    checkpoints: int
    first_bad: int | None = None
    problem: str = ""


class _Bad(Exception):
    def __init__(self, first_bad: int | None, problem: str):
        super().__init__(problem)
        self.first_bad, self.problem = first_bad, problem


def verify_log(directory: Path, external: Path | None = None, published: list[Entry] | None = None) -> Verdict:
    """Walk the chain and every signed checkpoint; name the first bad record.

    ``external``: a shipped copy of the log stream; ``published``: this chain's entries from the
    shared store (:mod:`.audit_writers`). The log must reach every checkpoint in each."""
    state = {"records": 0, "checkpoints": 0}
    try:
        chain_key, public = _keys(directory)
        entries = _checkpoint_file(directory, public)
        witnesses = [(checkpoints.FILE_NAME, entries)]
        if external is not None:
            witnesses.append(("the shipped log", _shipped(external, public)))
        if published:
            witnesses.append(("the shared store", _signed(published, public, "the shared store")))
        _check_database(directory, chain_key, public, witnesses, state)
    except _Bad as bad:
        return Verdict(False, state["records"], state["checkpoints"], bad.first_bad, bad.problem)
    return Verdict(True, state["records"], state["checkpoints"])


def _keys(directory: Path) -> tuple[bytes, Ed25519PublicKey]:
    chain_file, _, public_file = (directory / n for n in KEY_FILES)
    log_there = log_exists(directory)
    if not chain_file.exists():
        raise _Bad(None, f"the chain key {chain_file.name} is missing" if log_there else f"no audit log in {directory}")
    if not public_file.exists():
        raise _Bad(None, f"the public signing key {public_file.name} is missing")
    if not log_there:
        raise _Bad(None, f"the audit log is gone (no audit.db, no {checkpoints.FILE_NAME}) but its chain key remains")
    return chain_file.read_bytes(), Ed25519PublicKey.from_public_bytes(public_file.read_bytes())


def _signed(entries: list[Entry], public: Ed25519PublicKey, where: str) -> list[Entry]:
    for entry in entries:
        if not checkpoints.signature_ok(public, entry.kind, entry.count, entry.head, entry.sig):
            raise _Bad(entry.count, f"the {entry.kind} entry at {entry.count} in {where} has a bad signature")
    return entries


def _checkpoint_file(directory: Path, public: Ed25519PublicKey) -> list[Entry]:
    path = directory / checkpoints.FILE_NAME
    if not path.exists():
        raise _Bad(None, f"the checkpoint file {path.name} is missing")
    entries, bad = checkpoints.read_entries(path)
    if bad:
        raise _Bad(None, f"{bad} line(s) of {path.name} are not valid checkpoint entries: edited")
    if not entries or entries[0].kind != "genesis":
        raise _Bad(None, f"{path.name} does not begin with its signed genesis entry: truncated or replaced")
    return _signed(entries, public, path.name)


def _shipped(path: Path, public: Ed25519PublicKey) -> list[Entry]:
    if not path.exists():
        raise _Bad(None, f"the shipped checkpoints {path} do not exist")
    entries, _ = checkpoints.read_entries(path)
    return _signed(entries, public, str(path))


def _check_database(directory: Path, chain_key: bytes, public: Ed25519PublicKey,
                    witnesses: list[tuple[str, list[Entry]]], state: dict) -> None:
    path = directory / "audit.db"
    if not path.exists():
        raise _Bad(None, "audit.db is missing but its chain key and checkpoints remain")
    db = open_readonly(path)
    try:
        db.execute("BEGIN")  # one snapshot, even while the gateway writes
        anchor = _anchor(db, public, witnesses[0][1])
        macs = _walk(db, chain_key, anchor, state)
        last = anchor[0] + state["records"]
        stored = _stored_checkpoints(db, public, macs, last, anchor[0], state)
        for where, listed in witnesses:
            _against(listed, where, macs, stored, last, anchor[0])
    except sqlite3.DatabaseError as exc:
        raise _Bad(None, f"audit.db cannot be read ({exc})") from None
    finally:
        db.close()


def _anchor(db, public: Ed25519PublicKey, entries: list[Entry]) -> tuple[int, str]:
    row = db.execute("SELECT seq, mac, sig FROM anchor WHERE id = 1").fetchone()
    if row is None:
        return 0, GENESIS
    seq, mac, sig = row
    if not checkpoints.signature_ok(public, "retention", seq, mac, sig):
        raise _Bad(seq, "the retention anchor has a bad signature")
    if not any(e.kind == "retention" and e.count == seq and e.head == mac for e in entries):
        raise _Bad(seq, f"the retention anchor at {seq} is not in {checkpoints.FILE_NAME}")
    return seq, mac


def _walk(db, chain_key: bytes, anchor: tuple[int, str], state: dict) -> dict[int, str]:
    (expected, head), macs = (anchor[0] + 1, anchor[1]), {}
    # Records at or below the anchor are retention's, not yet deleted (a worker removes them in chunks).
    for seq, ts, data, mac in db.execute("SELECT seq, ts, data, mac FROM records WHERE seq > ? ORDER BY seq", (anchor[0],)):
        if seq != expected:
            raise _Bad(expected, f"record {expected} is missing (next present is {seq})")
        try:
            record = json.loads(data)
        except ValueError:
            record = {}
        if record.get("seq") != seq:
            raise _Bad(seq, f"record {seq} carries sequence number {record.get('seq')}: moved")
        head = chain(chain_key, head, data)
        if not hmac.compare_digest(head, mac):
            raise _Bad(seq, f"record {seq} does not match its chain mac: edited or reordered")
        if record.get("ts") != ts:
            raise _Bad(seq, f"record {seq}'s time index ({ts}) differs from its own time ({record.get('ts')}): edited")
        macs[seq] = mac
        expected, state["records"] = seq + 1, state["records"] + 1
    return macs


def _stored_checkpoints(db, public, macs: dict[int, str], last: int, anchored: int, state: dict) -> set[int]:
    rows = db.execute("SELECT count, head, sig FROM checkpoints ORDER BY count").fetchall()
    for count, head, sig in rows:
        if not checkpoints.signature_ok(public, "checkpoint", count, head, sig):
            raise _Bad(count, f"checkpoint at {count} has a bad signature")
        _covers(count, head, macs, last, anchored, "a signed checkpoint")
        state["checkpoints"] += 1
    return {row[0] for row in rows}


def _against(listed: list[Entry], where: str, macs: dict[int, str], stored: set[int], last: int, anchored: int) -> None:
    for entry in listed:
        if entry.kind == "retention" and entry.count > anchored:
            raise _Bad(anchored + 1, f"{where} records a retention run up to {entry.count}, but the database's "
                                     f"anchor is at {anchored}: the anchor was rolled back")
        if entry.kind != "checkpoint" or entry.count <= anchored:
            continue
        _covers(entry.count, entry.head, macs, last, anchored, f"a checkpoint in {where}")
        if entry.count not in stored and where == checkpoints.FILE_NAME:
            raise _Bad(entry.count, f"the checkpoint at {entry.count} listed in {where} is missing from the database")


def _covers(count: int, head: str, macs: dict[int, str], last: int, anchored: int, what: str) -> None:
    if count <= anchored:
        return
    if count > last:
        raise _Bad(last + 1, f"the log ends at record {last} but {what} covers {count}: truncated")
    if macs.get(count) != head:
        raise _Bad(count, f"record {count} differs from {what}")


async def verify_in_subprocess(directory: Path) -> Verdict:
    """:func:`verify_log` in a process of its own: a walk over millions of records holds no
    lock the gateway's event loop needs (a thread would share its interpreter lock)."""
    status, output = await in_process("seekstack.governance.audit_verify", str(directory))  # the auditor left: killed
    if status != 0:
        return Verdict(False, 0, 0, None, f"the verifier process failed (exit {status})")
    return Verdict(**json.loads(output))


if __name__ == "__main__":  # python -m seekstack.governance.audit_verify DIR: the verdict as JSON
    import sys

    print(json.dumps(verify_log(Path(sys.argv[1])).__dict__))
