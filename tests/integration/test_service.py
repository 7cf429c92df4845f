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
                          ("PrivateTmp", "yes"), ("CapabilityBoundingSet", ""), ("Restart", "on-failure")):
        assert service[option] == value, option
    assert str(tmp_path / "state") in service["ReadWritePaths"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    user = cli("service", "install", "--config", str(config), "-o", "-")
    assert user.returncode == 0 and _unit(user.stdout)["Install"]["WantedBy"] == "default.target"
    missing = cli("service", "install", "-o", "-")
    assert missing.returncode == 1 and "--config" in missing.stderr and "Traceback" not in missing.stderr
