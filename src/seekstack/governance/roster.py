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
"""

from __future__ import annotations

import os
import socket
import time

from .. import __version__
from .store import IdentityStore

SEEN_EVERY_S = 10.0  # a gateway's batched writes (last uses, usage) carry its heartbeat this often
SILENT_AFTER_S = 3 * SEEN_EVERY_S  # three missed
SERVING, SILENT, STOPPED = "serving", "silent", "stopped"


def enrol(store: IdentityStore, writer: str, address: str, audit_dir: str) -> None:
    """Record this process as the gateway writing ``writer``'s chain, started now."""
    store.gateway_started(writer, socket.gethostname(), address, audit_dir, __version__, os.getpid())


def listed(store: IdentityStore, me: str | None = None, now: float | None = None) -> list[dict]:
    """Every gateway the database knows, with its state; ``me`` (this gateway's writer) is marked."""
    now = time.time() if now is None else now
    return [{**row, "state": state(row, now), "this": row["writer"] == me} for row in store.gateways()]


def state(row: dict, now: float) -> str:
    if row["stopped"] is not None:
        return STOPPED
    return SERVING if now - row["seen"] <= SILENT_AFTER_S else SILENT
