"""Captured bodies: AES-256-GCM envelope encryption, key rotation, retention, master key from env."""

from __future__ import annotations

import asyncio
import base64
import os
import time

import pytest
from cryptography.exceptions import InvalidTag

from seekstack.config import Settings, load_settings
from seekstack.errors import ConfigError
from seekstack.governance.bodies import MASTER_ENV, BodyVault

SECRET = "患者张伟 身份证11010519491231002X 的病历"


def test_bodies_are_encrypted_and_bound_to_their_request(tmp_path):
    vault = BodyVault(tmp_path, rotation_hours=72)
    vault.store("req_1", {"request": {"messages": [{"role": "user", "content": SECRET}]}, "response": "ok"})
    assert vault.read("req_1")["request"]["messages"][0]["content"] == SECRET
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("bodies.db*"))
    assert SECRET.encode() not in raw and "张伟".encode() not in raw
    assert oct((tmp_path / "audit-master.key").stat().st_mode & 0o777) == "0o600"
    # moved to another request id, it no longer decrypts
    vault.db.execute("UPDATE bodies SET request_id = 'req_2' WHERE request_id = 'req_1'")
    with pytest.raises(InvalidTag):
        vault.read("req_2")


def test_data_keys_rotate_and_old_ones_still_decrypt(tmp_path):
    vault = BodyVault(tmp_path, rotation_hours=0.5 / 3600)  # a new key every half second
    vault.store("a", {"response": "first"})
    time.sleep(0.6)
    vault.store("b", {"response": "second"})
    assert len(vault.key_ids()) == 2
    assert vault.read("a") == {"response": "first"} and vault.read("b") == {"response": "second"}


def test_body_retention_keeps_important_ones_longer(tmp_path):
    vault = BodyVault(tmp_path, rotation_hours=72)
    for rid, important, age_days in (("plain-old", False, 100), ("plain-new", False, 10),
                                     ("important-old", True, 100), ("important-older", True, 200)):
        vault.store(rid, {"response": rid}, important)
        vault.db.execute("UPDATE bodies SET ts = ? WHERE request_id = ?", (time.time() - age_days * 86400, rid))
    now = time.time()
    assert asyncio.run(vault.purge(now - 90 * 86400, now - 180 * 86400)) == 2
    assert [vault.read(r) is not None for r in ("plain-old", "plain-new", "important-old", "important-older")] == \
        [False, True, True, False]


def test_purge_deletes_a_chunk_at_a_time_while_bodies_are_stored(tmp_path):
    """Retention's purge deletes a small chunk per event-loop turn, so bodies stored meanwhile
    (on the same loop) go in between its chunks, and are kept."""
    vault = BodyVault(tmp_path, rotation_hours=72)
    old = time.time() - 100 * 86400
    for n in range(25):
        vault.store(f"old-{n}", {"response": "x"})
        vault.db.execute("UPDATE bodies SET ts = ? WHERE request_id = ?", (old, f"old-{n}"))
    between: list[int] = []  # bodies left to purge each time a new one is stored

    async def run() -> int:
        purging = asyncio.ensure_future(vault.purge(time.time() - 90 * 86400, old - 1, chunk=4, pause=0))
        for n in range(10):
            await asyncio.sleep(0)
            vault.store(f"new-{n}", {"response": "y"})
            between.append(vault.db.execute("SELECT COUNT(*) FROM bodies WHERE request_id LIKE 'old-%'").fetchone()[0])
        return await purging

    assert asyncio.run(run()) == 25
    assert between[0] < 25 and between[1] < between[0]  # interleaved: a chunk of 4 per turn
    assert vault.db.execute("SELECT COUNT(*) FROM bodies").fetchone()[0] == 10
    assert vault.read("new-9") == {"response": "y"} and vault.read("old-0") is None


def test_master_key_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(MASTER_ENV, base64.b64encode(os.urandom(32)).decode())
    vault = BodyVault(tmp_path, rotation_hours=72)
    vault.store("x", {"response": "y"})
    assert not (tmp_path / "audit-master.key").exists() and vault.read("x") == {"response": "y"}


def test_audit_retention_shorter_than_six_months_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("audit: {retention_days: 90}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config, environ={})
    assert "184" in str(err.value.message) and "six months" in str(err.value.message)
    assert Settings(audit={"retention_days": 365}).audit.retention_days == 365
