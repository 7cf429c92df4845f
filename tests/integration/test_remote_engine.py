"""`engine: remote` — an OpenAI-compatible server seekstack does not start, behind the same gateway."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import ROOT, Server, free_port


def start_stub(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "stub_openai.py"), str(port)])
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("stub did not start")


def test_remote_engine_is_routed_health_checked_and_recovers(tmp_path: Path):
    port = free_port()
    stub = start_stub(port)
    srv = Server(tmp_path, {"pii": {"default": "mask"}, "supervisor": {"backoff_initial": 0.2, "backoff_max": 0.5},
                            "models": [{"name": "upstream", "engine": "remote", "url": f"http://127.0.0.1:{port}"}]}).start()
    try:
        r = srv.http.post("/v1/chat/completions", json={"model": "upstream", "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200
        answer = r.json()["choices"][0]["message"]["content"]
        assert answer == "The answer is 42. Call [CN_MOBILE] for details."  # the gateway's controls apply to it too
        assert r.json()["model"] == "upstream"
        stub.kill()
        stub.wait()
        deadline = time.monotonic() + 10
        while srv.http.get("/readyz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        down = srv.http.post("/v1/chat/completions", json={"model": "upstream", "messages": [{"role": "user", "content": "Hi"}]})
        assert down.status_code == 503 and "retry-after" in down.headers
        stub = start_stub(port)
        deadline = time.monotonic() + 15
        while srv.http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        again = srv.http.post("/v1/chat/completions", json={"model": "upstream", "messages": [{"role": "user", "content": "Hi"}]})
        assert again.status_code == 200
    finally:
        srv.stop()
        stub.kill()
