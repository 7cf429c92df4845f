"""`seekstack stop` and `seekstack service install` (issue 20 item 6)."""

from __future__ import annotations

import configparser
import subprocess

from conftest import SEEKSTACK, Server, pid_alive


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*SEEKSTACK, *args], capture_output=True, text=True, timeout=120)


def test_stop_ends_the_running_serve_and_its_engines(tmp_path):
    server = Server(tmp_path, {"models": [{"name": "m", "source": "embedded", "context": 256, "slots": 1}]}).start()
    engine = server.replicas()[0]["pid"]
    result = cli("stop", "--config", str(server.config_path))
    assert result.returncode == 0 and f"stopped seekstack serve (PID {server.proc.pid})" in result.stdout, result.stderr
    assert server.proc.wait(10) in (0, -15) and not pid_alive(engine)  # uvicorn re-raises SIGTERM once drained
    again = cli("stop", "--config", str(server.config_path))
    assert again.returncode == 0 and "no seekstack serve is running" in again.stdout


def _unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(text)
    return parser


def test_service_install_writes_a_hardened_systemd_unit(tmp_path):
    config = tmp_path / "my config.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    system = tmp_path / "seekstack.service"
    result = cli("service", "install", "--system", "--config", str(config), "-o", str(system))
    assert result.returncode == 0 and "systemctl daemon-reload && systemctl enable --now seekstack" in result.stdout
    unit = _unit(system.read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith(f'-m seekstack serve --config "{config}"')  # quoted: the path has a space
    for option, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("UMask", "0077"),
                          ("PrivateTmp", "yes"), ("CapabilityBoundingSet", ""), ("Restart", "on-failure"),
                          ("ExecReload", "/bin/kill -HUP $MAINPID")):
        assert service[option] == value, option
    assert str(tmp_path / "state") in service["ReadWritePaths"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    user = cli("service", "install", "--config", str(config), "-o", "-")
    assert user.returncode == 0 and _unit(user.stdout)["Install"]["WantedBy"] == "default.target"
    missing = cli("service", "install", "-o", "-")
    assert missing.returncode == 1 and "--config" in missing.stderr and "Traceback" not in missing.stderr


def test_a_model_unloads_and_loads_without_a_restart(tmp_path):
    from conftest import engine_request  # noqa: F401  (the engine is gone: its PID is the proof)

    server = Server(tmp_path, {"models": [{"name": "a", "source": "embedded", "context": 256, "slots": 1},
                                          {"name": "b", "source": "embedded", "context": 256, "slots": 1}]}).start()
    try:
        body = {"model": "b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        engine = next(r["pid"] for r in server.replicas() if r["model"] == "b")
        result = cli("models", "unload", "b", "--config", str(server.config_path))
        assert result.returncode == 0 and "unloaded b" in result.stdout, result.stderr
        assert not pid_alive(engine)
        r = server.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 503 and "seekstack models load b" in r.json()["error"]["message"]
        assert server.http.get("/readyz").status_code == 200  # the gateway still serves model a
        assert server.http.post("/v1/chat/completions", json={**body, "model": "a"}).status_code == 200
        assert {r["model"]: r["state"] for r in server.replicas()}["b"] == "unloaded"
        result = cli("models", "load", "b", "--config", str(server.config_path))
        assert result.returncode == 0 and "loaded b" in result.stdout, result.stderr
        assert server.http.post("/v1/chat/completions", json=body).status_code == 200
        unknown = cli("models", "unload", "nosuch", "--config", str(server.config_path))
        assert unknown.returncode == 1 and "not configured" in unknown.stderr
        viewer = server.http.post("/admin/v1/models/b/unload", headers={"Authorization": "Bearer nope"})
        assert viewer.status_code == 401
    finally:
        server.stop()
