"""`seekstack stop` and `seekstack service install`: run the server like any other service."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..config import Settings, load_settings
from ..errors import ConfigError
from .common import ConfigOption, console, output_file, pid_running, running_server

out = console()
app = typer.Typer(help="Run seekstack under systemd.", no_args_is_help=True)


def stop(
    config: Optional[Path] = ConfigOption,
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0, help="Seconds to let in-flight requests finish "
                                            "before the process is killed (default: server.drain_timeout + 15)."),
) -> None:
    """Stop the running `seekstack serve` of this state directory: gracefully (in-flight requests
    finish, engines stop), then by force after the timeout."""
    settings = load_settings(config)
    running = running_server(settings)
    if running is None:
        out.print(f"no seekstack serve is running for {settings.state_path}")
        return
    pid = running["pid"]
    limit = timeout if timeout is not None else settings.server.drain_timeout + 15
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not pid_running(pid):
            out.print(f"[green]stopped[/] seekstack serve (PID {pid})")
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)  # its engines die with it (their lifeline)
    out.print(f"[yellow]killed[/] seekstack serve (PID {pid}): it did not stop within {limit:g} s")


@app.command("install")
def install(
    user: bool = typer.Option(True, "--user/--system", help="A user unit (~/.config/systemd/user, the default) or a "
                                                          "system unit (/etc/systemd/system, as root)."),
    config: Optional[Path] = ConfigOption,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the unit here instead ('-' for stdout)."),
) -> None:
    """Write a systemd unit that runs `seekstack serve` with systemd's hardening options."""
    settings = load_settings(config)
    if config is None:
        raise ConfigError("service install needs the config the service should serve",
                          fix="pass --config /path/to/seekstack.yaml (an absolute path; the unit keeps it)")
    unit = render_unit(settings, Path(config).resolve(), user=user)
    target = output or (Path.home() / ".config/systemd/user/seekstack.service" if user
                        else Path("/etc/systemd/system/seekstack.service"))
    if str(target) != "-":
        target.parent.mkdir(parents=True, exist_ok=True)
    with output_file(target, mode=0o644) as f:
        f.write(unit)
    if str(target) != "-":
        ctl = "systemctl --user" if user else "systemctl"
        out.print(f"[green]wrote[/] {target}; start it with: {ctl} daemon-reload && {ctl} enable --now seekstack")
        out.print(f"[dim]stop with `{ctl} stop seekstack` (or `seekstack stop`); logs: journalctl "
                  f"{'--user ' if user else ''}-u seekstack[/]")


def _arg(value: str) -> str:
    """One argument of a systemd command line (double quotes keep spaces; backslashes and quotes escaped)."""
    if not any(c in value for c in ' "\\\''):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(settings: Settings, config: Path, *, user: bool) -> str:
    state = settings.state_path.resolve()
    writable = sorted({str(state), *(str(Path(p).expanduser().resolve()) for p in
                                     (settings.audit.dir, settings.store.path) if p is not None)})
    hardening = [
        "NoNewPrivileges=yes", "UMask=0077", "PrivateTmp=yes", "ProtectSystem=strict",
        "ProtectHome=read-only", f"ReadWritePaths={' '.join(writable)}", "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes", "ProtectClock=yes",
        "ProtectHostname=yes", "RestrictSUIDSGID=yes", "RestrictRealtime=yes", "RestrictNamespaces=yes",
        "LockPersonality=yes", "SystemCallArchitectures=native", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=", "AmbientCapabilities=",
    ]
    if user:  # what a user manager can apply without privileges
        hardening = ["NoNewPrivileges=yes", "UMask=0077", f"ReadWritePaths={' '.join(writable)}"]
    lines = [
        "# Written by `seekstack service install`. Edit the config, not this file; rewrite it after moving seekstack.",
        "[Unit]",
        "Description=seekstack: private DeepSeek serving",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={_arg(sys.executable)} -m seekstack serve --config {_arg(str(config))}",
        "ExecReload=/bin/kill -HUP $MAINPID",  # `systemctl reload`: the config's models, applied without a restart
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={int(settings.server.drain_timeout) + 30}",
        "Restart=on-failure",
        "RestartSec=5",
        "LimitNOFILE=65536",
        *hardening,
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)
