"""The pepper: the secret that API keys, console passwords and CSRF tokens are keyed with.

``<state_dir>/pepper.key`` holds 32 random bytes (mode 0600), made by the first start. It is
never in the governance database, so a stolen database alone cannot be brute-forced offline
(:mod:`.keys`). So every gateway on one database must hold the same file — and a gateway with
another one recognizes no key: behind a balancer, a share of every client's requests would
get 401 and nobody would see why.

The database keeps the pepper's fingerprint instead (HMAC under the pepper of a fixed label:
it tells nothing about the pepper), and :func:`load_shared_pepper` refuses a start whose
pepper does not match, naming the file and the fix. A state directory without ``pepper.key``
on a database that already has keys is refused too, rather than given a new pepper that fits
none of them (the operator forgot to copy the file, or it was lost). A database from before
fingerprints has its first gateway's recorded at that gateway's start.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from ..errors import ConfigError
from .keys import write_secret_file
from .store import IdentityStore

FACT = "pepper"
LABEL = b"seekstack pepper fingerprint"
COPY_FIX = ("copy pepper.key (mode 0600) into this state_dir from a gateway already using this governance "
            "database (or restore it from backup); every gateway on one database needs the same file")


def fingerprint(pepper: bytes) -> str:
    return hmac.new(pepper, LABEL, hashlib.sha256).hexdigest()


def load_shared_pepper(path: Path, store: IdentityStore) -> bytes:
    """The pepper in ``path`` (made if this is the database's first one), checked against ``store``'s
    fingerprint; ConfigError naming the file if it is not the one the keys there were hashed with."""
    known = store.fleet_fact(FACT)
    if not path.exists():
        if known is not None or not store.is_empty():
            raise ConfigError(f"{path} is missing, and the governance database already holds keys hashed with a "
                              "pepper: a new one would fit none of them", fix=COPY_FIX)
        write_secret_file(path, secrets.token_bytes(32))
    pepper = path.read_bytes()
    mine = fingerprint(pepper)
    if known is None:
        known = store.settle_fleet_fact(FACT, mine)
    if not hmac.compare_digest(known, mine):
        raise ConfigError(f"{path} is not the pepper the governance database's keys were hashed with, so this "
                          "gateway would refuse every key", fix=COPY_FIX)
    return pepper
