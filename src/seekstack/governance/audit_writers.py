"""One audit log across many writers: each gateway keeps its own hash chain (its ``audit.dir``,
named by ``audit-writer.id``), registers it in the shared governance store with its public
signing key, and publishes every signed entry (genesis, checkpoints, retention anchors) there.

``verify_writers()`` checks a set of collected chains against that store: every registered
writer must be present (a missing writer segment is a finding), carry the registered public
key (a chain re-signed with another key is a finding), and pass :func:`verify_log` with the
store's entries as one more witness — so a chain edited, reordered, or truncated together
with its own checkpoint file is still caught by what the store holds. ``merged_records()``
interleaves the chains by time for export, each record naming its writer.

At start, :func:`attach` also compares the chain with what the store vouches for under its
writer (:func:`divergence`). A chain behind the store's newest entry, or with another head at
an entry's record, is not the chain the store knows: its directory was restored from an older
copy, lost its last commits (a power failure), or was copied from another gateway's (a cloned
VM image). The gateway still serves — every request is still audited, in this chain — but it
says so at once, in its log and in ``/readyz``, instead of leaving it to the next verify.
"""

from __future__ import annotations

import base64
import heapq
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .audit import WRITER_FILE, AuditLog, read_records
from .audit_verify import Verdict, verify_log
from .checkpoints import Entry
from .store import IdentityStore

log = logging.getLogger("seekstack.audit")


def attach(audit: AuditLog, store: IdentityStore) -> None:
    """Register ``audit``'s chain in ``store`` and publish its signed entries there from now on
    (the newest one at once: a chain is known from its first start)."""
    public = audit.keys.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    store.register_audit_writer(audit.writer, base64.b64encode(public).decode())
    audit.diverged = divergence(audit, store.newest_audit_entries(audit.writer))
    if audit.diverged is not None:
        log.error("audit chain %s in %s: %s; `seekstack audit verify --chains` will report it — give this gateway a "
                  "fresh audit.dir (keep this one as evidence)", audit.writer, audit.path.parent, audit.diverged)

    def publish(entry: Entry) -> None:
        store.publish_audit_entry(audit.writer, entry.kind, entry.count, entry.head, entry.ts, entry.sig)

    from .checkpoints import read_entries

    entries, _ = read_entries(audit.sidecar.path)
    for entry in entries[-1:]:
        publish(entry)
    audit.on_vouch = publish


def divergence(audit: AuditLog, published: list[tuple[str, int, str, float, str]]) -> str | None:
    """Why ``audit``'s chain is not the one ``published`` (the store's newest entries for its
    writer, newest first) vouches for, or None: the store's newest entry is past the chain's end,
    or the newest entry the chain can compare (its record still held) has another head."""
    newest = published[0][1] if published else 0
    if newest > audit.seq:
        return (f"the shared store vouches for {newest} record(s), this chain ends at {audit.seq}: an older copy "
                "(restored from backup, or its last commits lost) or another gateway's")
    for _, count, head, *_ in published:
        mine = audit.mac_at(count) if count else None
        if mine is not None:
            return None if mine == head else (f"record {count} is not the one the shared store vouches for: another "
                                              "gateway's chain under the same writer (a copied audit directory)")
    return None


@dataclass
class WritersVerdict:
    ok: bool
    writers: dict[str, dict[str, Any]] = field(default_factory=dict)  # writer → its verdict, directory
    problems: list[str] = field(default_factory=list)


def verify_writers(store: IdentityStore, directories: list[Path]) -> WritersVerdict:
    registered = store.audit_writers()
    enrolled = {g["writer"]: g for g in store.gateways()}
    found: dict[str, Path] = {}
    problems: list[str] = []
    for directory in directories:
        id_file = directory / WRITER_FILE
        if not id_file.exists():
            problems.append(f"{directory}: no {WRITER_FILE} — not a gateway's audit directory")
            continue
        writer = id_file.read_text().strip()
        if writer in found:
            problems.append(f"{directory}: writer {writer} is also in {found[writer]}")
        elif writer not in registered:
            problems.append(f"{directory}: writer {writer} is not registered in the shared store")
        found[writer] = directory
    result: dict[str, dict[str, Any]] = {}
    for writer, public_key in registered.items():
        entries = [Entry(kind, count, head, ts, sig, writer) for kind, count, head, ts, sig in store.audit_entries(writer)]
        newest = max((e.count for e in entries if e.kind == "checkpoint"), default=0)
        directory = found.get(writer)
        if directory is None:
            gateway = enrolled.get(writer)
            where = f"; written by the gateway on {gateway['host']} in {gateway['audit_dir']}" if gateway else ""
            problems.append(f"writer {writer}: its chain is missing (a missing writer segment; the shared store "
                            f"vouches for {newest} record(s){where})")
            result[writer] = {"ok": False, "directory": None, "problem": "missing"}
            continue
        on_disk = (directory / "audit-signing.pub")
        if on_disk.exists() and base64.b64encode(on_disk.read_bytes()).decode() != public_key:
            problems.append(f"writer {writer}: {on_disk} is not the key it registered — the chain was re-signed")
            result[writer] = {"ok": False, "directory": str(directory), "problem": "signing key replaced"}
            continue
        verdict: Verdict = verify_log(directory, published=entries)
        result[writer] = {**verdict.__dict__, "directory": str(directory)}
        if not verdict.ok:
            where = f"first bad record is #{verdict.first_bad}: " if verdict.first_bad is not None else ""
            problems.append(f"writer {writer}: {where}{verdict.problem}")
    return WritersVerdict(not problems, result, problems)


def merged_records(directories: list[Path], *, since: float | None = None, until: float | None = None,
                   filters: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Every chain's records in one stream, by time (each chain is in time order already), each
    with ``writer`` — its chain's name."""
    def one(directory: Path) -> Iterator[tuple[float, str, int, dict[str, Any]]]:
        writer = (directory / WRITER_FILE).read_text().strip() if (directory / WRITER_FILE).exists() else directory.name
        for record in read_records(directory / "audit.db", since=since, until=until, filters=filters):
            yield record.get("ts", 0.0), writer, record.get("seq", 0), {**record, "writer": writer}

    for _, _, _, record in heapq.merge(*(one(d) for d in directories)):
        yield record
