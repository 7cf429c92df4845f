"""Fail-closed that cannot be turned into an outage: floods, a locked audit store, a second serve (issue 15)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

import httpx
import pytest

from conftest import SEEKSTACK, Server

HELLO = [{"role": "user", "content": "Hi"}]
SMALL = {"name": "m", "source": "embedded", "context": 256, "slots": 1, "threads": 1}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    # a small audit store (1 MiB): a flood must not be able to fill it
    srv = Server(tmp_path_factory.mktemp("failclosed"), {"models": [SMALL], "audit": {"max_bytes": 1 << 20}}).start()
    yield srv
    srv.stop()


def audit_count(srv: Server) -> int:
    db = sqlite3.connect(f"file:{srv.key_path.parent / 'audit' / 'audit.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    finally:
        db.close()


def test_an_unauthenticated_flood_cannot_fill_the_audit_store(gateway):
    """300 keyless requests with 20 KB paths (6 MB of paths, six times the store's 1 MiB budget): at most
    audited_failures (20) records, each with a bounded path; past failures_per_minute (60) they get 429 at
    once; a valid key from the same address is served."""
    before = audit_count(gateway)
    codes = []
    with httpx.Client(base_url=gateway.url, timeout=10) as anonymous:
        for i in range(300):
            codes.append(anonymous.get("/v1/" + "a" * 20_000 + str(i)).status_code)
    assert codes[:60] == [401] * 60 and set(codes[60:]) == {429}, codes
    written = audit_count(gateway) - before
    assert written <= 20, written
    r = gateway.http.post("/v1/chat/completions", json={"model": "m", "messages": HELLO, "max_tokens": 1})
    assert r.status_code == 200
    auditor_view = sqlite3.connect(f"file:{gateway.key_path.parent / 'audit' / 'audit.db'}?mode=ro", uri=True)
    longest = max(len(json.loads(d)["endpoint"]) for (d,) in
                  auditor_view.execute("SELECT data FROM records WHERE data LIKE '%\"deny\"%'"))
    assert longest < 300
    assert gateway.http.get("/readyz").status_code == 200


def test_a_locked_audit_store_makes_the_gateway_unready_and_it_recovers_by_itself(gateway):
    body = {"model": "m", "messages": HELLO, "max_tokens": 1}
    holder = sqlite3.connect(gateway.key_path.parent / "audit" / "audit.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock (a backup tool, say)
    try:
        r = gateway.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 503 and r.json()["error"]["code"] == "audit_unavailable"
        for _ in range(5):
            assert gateway.http.post("/v1/chat/completions", json=body).status_code == 503
        ready = gateway.http.get("/readyz")
        assert ready.status_code == 503 and "audit" in ready.json() and "locked" in ready.json()["audit"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    deadline = time.monotonic() + 5
    while gateway.http.get("/readyz").status_code != 200:  # no request needed: it retries every second
        assert time.monotonic() < deadline, "the gateway did not recover"
        time.sleep(0.1)
    assert gateway.http.post("/v1/chat/completions", json=body).status_code == 200
    log = gateway.log_path.read_text()
    assert log.count("audit log unavailable") == 1 and "RuntimeError: RuntimeError" not in log
    assert "writable again" in log
    verify = subprocess.run([*SEEKSTACK, "audit", "verify", "--config", str(gateway.config_path)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_a_second_serve_on_the_same_state_directory_is_refused(gateway):
    second = subprocess.run([*SEEKSTACK, "serve", "--config", str(gateway.config_path), "--port", "0"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert second.returncode != 0
    assert f"PID {gateway.proc.pid}, port {gateway.port}" in second.stderr and "fix:" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    r = gateway.http.post("/v1/chat/completions", json={"model": "m", "messages": HELLO, "max_tokens": 1})
    assert r.status_code == 200  # the first one was not disturbed


def test_a_fatal_signal_leaves_a_line_in_the_log(tmp_path):
    """SIGBUS (a store file truncated under its memory map) killed the gateway without a word."""
    import signal

    srv = Server(tmp_path, {"models": [SMALL]}).start()
    srv.proc.send_signal(signal.SIGBUS)
    srv.proc.wait(30)
    assert "Fatal Python error: Bus error" in srv.log_path.read_text()
