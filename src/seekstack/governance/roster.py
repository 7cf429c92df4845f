"""The gateways on one governance database, as the database knows them.

Each gateway process that serves requests has a row, named by its audit writer (the chain it
writes is its identity): its host, address, audit directory, seekstack version and process,
when it started, when it was last seen — each batch of its writes, every ``SEEN_EVERY_S`` —
and when it stopped.
``GET /admin/v1/gateways`` and `seekstack gateways` list them with a state:

- ``serving``: seen within ``SILENT_AFTER_S``;
- ``silent``: not seen since, and never stopped — killed, hung, or cut off from the database;
- ``stopped``: it shut down cleanly.

So an operator sees which gateways (and which versions, during a rolling upgrade) share the
database, and an auditor collecting every chain for `seekstack audit verify --chains` sees
where each one is; a missing chain's finding names its host and directory.

**One process per chain.** A copy of a gateway's audit directory (a cloned VM image, a volume
attached twice) is another process under the same writer: two chains that fork at the copy.
A gateway starting on a writer that another process is writing now (seen within
``SILENT_AFTER_S``, on another host or by a live process on this one) waits for that process to
fall silent, and is refused at start if it is seen meanwhile. Each row holds the ``instance``
of the process that enrolled last; a heartbeat that finds another there (two copies that
started together, or a gateway cut off from the database for long enough that its copy took
over) tells its gateway, which names it as a diverged chain.

**The same answers on every gateway.** A balancer sends a client's requests to any gateway, so
the settings a request's answer depends on — who may do what, what is masked, limited and
kept — must be the same on all of them. Each gateway records a fingerprint of each such
section (``POLICY``); :func:`drift` names the sections in which a serving gateway differs from
most of the others, which the listing, the log and ``seekstack_gateway_policy_differs`` show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from .. import __version__
from ..errors import ConfigError
from .store import IdentityStore

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("seekstack.governance")

SEEN_EVERY_S = 10.0  # a gateway's batched writes (last uses, usage) carry its heartbeat this often
SILENT_AFTER_S = 3 * SEEN_EVERY_S  # three missed
SERVING, SILENT, STOPPED = "serving", "silent", "stopped"
STATES = (SERVING, SILENT, STOPPED)

# The settings a request's answer depends on, by section (read at start only: a change needs a
# restart). Paths and addresses, which differ from host to host by design, are left out.
POLICY: dict[str, Callable[[Settings], Any]] = {
    "auth": lambda s: s.auth.enabled,
    "roles": lambda s: s.roles,
    "pii": lambda s: s.pii,
    "quotas": lambda s: s.quotas.store,
    "audit": lambda s: s.audit.model_dump(include={"retention_days", "capture_bodies", "bodies_days",
                                                   "important_bodies_days"}),
    "console": lambda s: s.console,
    "source_limits": lambda s: s.server.source_limits,
    "priorities": lambda s: s.scheduler.priorities,
}


def policy_of(settings: Settings) -> dict[str, str]:
    """Each ``POLICY`` section's fingerprint: 12 hex digits of the SHA-256 of its canonical JSON."""
    def canonical(value: Any) -> Any:
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items()}
        return value

    return {section: hashlib.sha256(json.dumps(canonical(read(settings)), sort_keys=True).encode()).hexdigest()[:12]
            for section, read in POLICY.items()}


def claim(store: IdentityStore, writer: str, address: str, audit_dir: str, policy: dict[str, str], *,
          poll: float = 1.0) -> str:
    """Enrol this process as the gateway writing ``writer``'s chain, started now; its instance.

    If another process is writing that chain now, wait for it to fall silent (at most
    ``SILENT_AFTER_S``); ConfigError if it is seen meanwhile (this directory is a copy of its)."""
    held = store.gateways(writer)
    if held and _elsewhere(held[0], time.time()):
        holder = held[0]
        log.warning("audit writer %s was written by the gateway on %s (pid %s) %.0f s ago: waiting up to %.0f s "
                    "for it to fall silent", writer, holder["host"], holder["pid"], time.time() - holder["seen"],
                    max(0.0, holder["seen"] + SILENT_AFTER_S - time.time()))
        _wait_until_silent(store, writer, holder, audit_dir, poll)
    instance = secrets.token_hex(8)
    store.gateway_started(writer, instance, socket.gethostname(), address, audit_dir, __version__, os.getpid(),
                          json.dumps(policy, sort_keys=True))
    return instance


def _elsewhere(row: dict, now: float) -> bool:
    """Is another process writing this row's chain now? Not if it stopped or fell silent, and not
    if it was this process, or a process of this host that is gone (a restart after a crash)."""
    if row["stopped"] is not None or now - row["seen"] > SILENT_AFTER_S:
        return False
    if row["host"] != socket.gethostname():
        return True
    return row["pid"] != os.getpid() and _alive(row["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _wait_until_silent(store: IdentityStore, writer: str, holder: dict, audit_dir: str, poll: float) -> None:
    while True:
        now = time.time()
        [row] = store.gateways(writer) or [None]
        if row is None or row["stopped"] is not None:
            return
        if row["instance"] != holder["instance"] or row["seen"] > holder["seen"]:
            raise ConfigError(
                f"audit writer {writer} is being written by the gateway on {row['host']} (pid {row['pid']}, seen "
                f"{now - row['seen']:.0f} s ago): {audit_dir} is a copy of that gateway's audit directory",
                fix="give this gateway an audit directory of its own (a fresh audit.dir or state_dir); keep this "
                    "copy as evidence")
        if now - row["seen"] > SILENT_AFTER_S:
            return
        time.sleep(min(poll, row["seen"] + SILENT_AFTER_S - now + 0.01))


def listed(store: IdentityStore, me: str | None = None, now: float | None = None) -> list[dict]:
    """Every gateway the database knows, with its state and the policy sections in which it
    differs from most serving gateways (``differs``); ``me`` (this gateway's writer) is marked."""
    now = time.time() if now is None else now
    rows = [{**row, "state": state(row, now), "this": row["writer"] == me} for row in store.gateways()]
    differs = drift(rows)
    return [{**{k: v for k, v in row.items() if k not in ("instance", "policy")},
             "differs": differs.get(row["writer"], [])} for row in rows]


def state(row: dict, now: float) -> str:
    if row["stopped"] is not None:
        return STOPPED
    return SERVING if now - row["seen"] <= SILENT_AFTER_S else SILENT


def drift(rows: list[dict]) -> dict[str, list[str]]:
    """Writer → the policy sections in which that serving gateway differs from most serving
    gateways (a tie goes to the one started last: the newer config). Rows carry ``state``."""
    serving = sorted((r for r in rows if r["state"] == SERVING and r.get("policy")), key=lambda r: r["started"],
                     reverse=True)
    policies = {r["writer"]: json.loads(r["policy"]) for r in serving}
    differs: dict[str, list[str]] = {}
    for section in POLICY:
        seen = [p.get(section) for p in policies.values()]  # newest first
        counts = Counter(seen)
        if len(counts) < 2:
            continue
        usual = next(v for v in seen if counts[v] == max(counts.values()))
        for writer, policy in policies.items():
            if policy.get(section) != usual:
                differs.setdefault(writer, []).append(section)
    return differs


class Fleet:
    """What this gateway last read of the roster (at each heartbeat): the gateways by state, the
    policy sections in which it differs from the others, and whether its row is still its own."""

    def __init__(self, writer: str, instance: str):
        self.writer = writer
        self.instance = instance
        self.counts: dict[str, int] = {s: 0 for s in STATES}
        self.differs: list[str] = []
        self.taken_by: dict | None = None  # the process that enrolled under this writer after us

    def read(self, store: IdentityStore, now: float | None = None) -> None:
        now = time.time() if now is None else now
        rows = [{**row, "state": state(row, now)} for row in store.gateways()]
        self.counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
        differs = drift(rows).get(self.writer, [])
        if differs and differs != self.differs:
            log.warning("this gateway's %s settings differ from most other serving gateways': a request may be "
                        "answered differently here than there; make the config the same on every gateway "
                        "(`seekstack gateways` lists who differs in what)", ", ".join(differs))
        self.differs = differs
        mine = next((r for r in rows if r["writer"] == self.writer), None)
        self.taken_by = mine if mine is not None and mine["instance"] != self.instance else None
