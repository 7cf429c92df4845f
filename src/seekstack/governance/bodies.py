"""Captured prompt and answer bodies, encrypted at rest (off unless ``audit.capture_bodies``).

Envelope encryption: each body is sealed with AES-256-GCM under the current *data key*
(the request id is the associated data, so a body cannot be moved to another request);
data keys are themselves sealed under a *master key* and stored beside the bodies. A new
data key is made every ``audit.data_key_rotation_hours``; old ones stay, to decrypt. The
master key comes from ``SEEKSTACK_AUDIT_MASTER_KEY`` (base64 of 32 bytes) or from the 0600
file ``audit-master.key``. Bodies are separate from the audit chain, so their retention
(90 days; 180 for requests marked important) never touches the chain.
"""

from __future__ import annotations

import base64
import json
import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keys import write_secret_file
from .sqlite import open_private

SCHEMA = """
CREATE TABLE IF NOT EXISTS data_keys (id TEXT PRIMARY KEY, created REAL NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bodies (request_id TEXT PRIMARY KEY, ts REAL NOT NULL, important INTEGER NOT NULL,
                                   key_id TEXT NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL);
"""
MASTER_ENV = "SEEKSTACK_AUDIT_MASTER_KEY"


def _master_key(directory: Path) -> bytes:
    if os.environ.get(MASTER_ENV):
        key = base64.b64decode(os.environ[MASTER_ENV])
        if len(key) != 32:
            raise ValueError(f"{MASTER_ENV} must be base64 of 32 bytes")
        return key
    path = directory / "audit-master.key"
    if not path.exists():
        write_secret_file(path, AESGCM.generate_key(bit_length=256))
    return path.read_bytes()


class BodyVault:
    def __init__(self, directory: Path, rotation_hours: float):
        self.path = directory / "bodies.db"
        self.db = open_private(self.path, SCHEMA)
        self.master = AESGCM(_master_key(directory))
        self.rotation_s = rotation_hours * 3600
        self._keys: dict[str, AESGCM] = {}

    def _current(self) -> tuple[str, AESGCM]:
        row = self.db.execute("SELECT id, created FROM data_keys ORDER BY created DESC LIMIT 1").fetchone()
        if row is None or time.time() - row[1] >= self.rotation_s:
            kid, key, nonce = uuid.uuid4().hex[:16], AESGCM.generate_key(bit_length=256), os.urandom(12)
            self.db.execute("INSERT INTO data_keys VALUES (?, ?, ?)",
                            (kid, time.time(), nonce + self.master.encrypt(nonce, key, kid.encode())))
            return kid, self._key(kid)
        return row[0], self._key(row[0])

    def _key(self, kid: str) -> AESGCM:
        if kid not in self._keys:
            sealed = self.db.execute("SELECT sealed FROM data_keys WHERE id = ?", (kid,)).fetchone()[0]
            self._keys[kid] = AESGCM(self.master.decrypt(sealed[:12], sealed[12:], kid.encode()))
        return self._keys[kid]

    def store(self, request_id: str, body: dict[str, Any], important: bool = False) -> None:
        kid, key = self._current()
        nonce = os.urandom(12)
        sealed = key.encrypt(nonce, json.dumps(body, ensure_ascii=False).encode(), request_id.encode())
        self.db.execute("INSERT OR REPLACE INTO bodies VALUES (?, ?, ?, ?, ?, ?)",
                        (request_id, time.time(), int(important), kid, nonce, sealed))

    def read(self, request_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT key_id, nonce, ciphertext FROM bodies WHERE request_id = ?", (request_id,)).fetchone()
        if row is None:
            return None
        kid, nonce, sealed = row
        return json.loads(self._key(kid).decrypt(nonce, sealed, request_id.encode()))

    async def purge(self, before: float, important_before: float, chunk: int = 200, pause: float = 0.005) -> int:
        """Delete the bodies past retention, ``chunk`` at a time, ``pause`` seconds apart, on the
        vault's own connection: a day of bodies deleted in one statement would hold the event
        loop, where bodies are stored, for seconds; a chunk holds it about a millisecond. Returns
        how many it deleted."""
        deleted = 0
        while True:
            gone = self.db.execute("DELETE FROM bodies WHERE rowid IN (SELECT rowid FROM bodies WHERE "
                                   "(important = 0 AND ts < ?) OR (important = 1 AND ts < ?) LIMIT ?)",
                                   (before, important_before, chunk)).rowcount
            deleted += gone
            if gone < chunk:
                return deleted
            await asyncio.sleep(pause)

    def key_ids(self) -> list[str]:
        return [k for (k,) in self.db.execute("SELECT id FROM data_keys ORDER BY created")]

    def close(self) -> None:
        self.db.close()
