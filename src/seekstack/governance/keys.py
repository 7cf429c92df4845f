"""API keys: ``sk-`` + a 12-character id + a 32-character secret, shown once, stored as a keyed hash.

The hash is HMAC-SHA256 under a server pepper (a random 32-byte file, 0600, in the state
directory), so a stolen database alone cannot be brute-forced offline. A key is looked up
by its id, then its hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string
from pathlib import Path

ALPHABET = string.ascii_lowercase + string.digits
ID_LEN = 12
SECRET_LEN = 32
PREFIX = "sk-"


def new_key() -> tuple[str, str]:
    """(key id, full key)."""
    kid = "".join(secrets.choice(ALPHABET) for _ in range(ID_LEN))
    secret = "".join(secrets.choice(ALPHABET + string.ascii_uppercase) for _ in range(SECRET_LEN))
    return kid, f"{PREFIX}{kid}{secret}"


def key_id(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    if not key.startswith(PREFIX) or len(key) != len(PREFIX) + ID_LEN + SECRET_LEN or not key.isascii():
        return None
    return key[len(PREFIX):len(PREFIX) + ID_LEN]


def hash_key(pepper: bytes, key: str) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def matches(pepper: bytes, key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(pepper, key), stored_hash)


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
