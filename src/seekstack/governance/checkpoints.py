"""Signed audit checkpoints kept outside the database: the append-only checkpoint file and the log stream.

The audit database alone cannot prove it is complete: whoever can edit it can also delete
its tail together with the checkpoint rows that vouch for it. So every checkpoint is also
written, signed, to two places the database does not hold:

- ``audit-checkpoints.jsonl`` beside it — opened append-only, one canonical JSON line each,
  fsynced — which ``seekstack audit verify`` reads on every run;
- the log stream (logger ``seekstack.audit``, field ``audit_checkpoint``), which an operator
  ships to write-once storage; ``seekstack audit verify --checkpoints FILE`` checks the log
  against that shipped copy, which nobody on this machine can shorten.

An entry is ``{"kind", "writer", "count", "head", "ts", "sig"}``:

- ``genesis`` (count 0) — written when the chain key is made: from then on an empty or
  missing log is a finding, never a fresh start;
- ``checkpoint`` — the chain's head mac after record ``count``;
- ``retention`` — the signed anchor a retention run left: records up to ``count`` were
  deleted on purpose, and ``head`` is the mac of the last one.

``writer`` names the chain; today each gateway keeps one (``main``), so several writers
sharing one store each sign their own segment.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger("seekstack.audit")

FILE_NAME = "audit-checkpoints.jsonl"
WRITER = "main"
KINDS = ("genesis", "checkpoint", "retention")


def checkpoint_message(count: int, head: str) -> bytes:
    return f"seekstack-audit-checkpoint:{count}:{head}".encode()


def anchor_message(seq: int, mac: str) -> bytes:
    return f"seekstack-audit-anchor:{seq}:{mac}".encode()


def message(kind: str, count: int, head: str) -> bytes:
    return anchor_message(count, head) if kind == "retention" else checkpoint_message(count, head)


def sign(key: Ed25519PrivateKey, kind: str, count: int, head: str) -> str:
    return base64.b64encode(key.sign(message(kind, count, head))).decode()


def signature_ok(public: Ed25519PublicKey, kind: str, count: int, head: str, sig: str) -> bool:
    try:
        public.verify(base64.b64decode(sig), message(kind, count, head))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Entry:
    kind: str
    count: int
    head: str
    ts: float
    sig: str
    writer: str = WRITER

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, value: object) -> "Entry | None":
        """An entry from a decoded JSON value, or None when it is not one."""
        if not isinstance(value, dict):
            return None
        try:
            entry = cls(str(value["kind"]), int(value["count"]), str(value["head"]), float(value["ts"]),
                        str(value["sig"]), str(value.get("writer", WRITER)))
        except (KeyError, TypeError, ValueError):
            return None
        return entry if entry.kind in KINDS else None


class CheckpointFile:
    """The append-only side file; every append is one whole line, fsynced, then logged."""

    def __init__(self, directory: Path):
        self.path = directory / FILE_NAME

    def exists(self) -> bool:
        return self.path.exists()

    def append(self, entry: Entry) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, entry.to_json() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        log.info("audit %s at record %d", entry.kind, entry.count, extra={"audit_checkpoint": entry.__dict__})


def read_entries(path: Path) -> tuple[list[Entry], int]:
    """Entries of a checkpoint file or of a shipped log (JSON lines carrying ``audit_checkpoint``),
    and how many lines looked like entries but could not be read (an edited line)."""
    return _parse(path.read_bytes().splitlines())


def _parse(lines: Iterable[bytes]) -> tuple[list[Entry], int]:
    entries, bad = [], 0
    for line in _nonblank(lines):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += b"audit" in line or b'"sig"' in line
            continue
        if isinstance(value, dict) and "audit_checkpoint" in value:
            value = value["audit_checkpoint"]
        entry = Entry.from_json(value)
        if entry is None:
            bad += isinstance(value, dict) and "sig" in value
            continue
        entries.append(entry)
    return entries, bad


def _nonblank(lines: Iterable[bytes]) -> Iterator[bytes]:
    for line in lines:
        line = line.strip()
        if line:
            yield line
