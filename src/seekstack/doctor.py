"""`seekstack doctor`: checks of the machine and the configuration, each OK / WARN / FAIL with its fix.

Checks are data: a list of functions taking the settings and returning :class:`Check` rows,
so more (drivers, CUDA, model integrity, memory planning) slot in as more functions.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import Settings, check_settings

OK, WARN, FAIL = "OK", "WARN", "FAIL"
CERT_WARN_DAYS = 30


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def config_check(settings: Settings) -> list[Check]:
    problems = check_settings(settings)
    if not problems:
        return [Check("configuration", OK, f"{len(settings.models)} model(s), valid")]
    return [Check("configuration", FAIL, p.split(" — ")[0], p.split(" — ")[1] if " — " in p else "") for p in problems]


def port_check(settings: Settings) -> list[Check]:
    host, port = settings.server.host, settings.server.port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            return [Check("port", WARN, f"{host}:{port} is in use ({exc.strerror})",
                          "stop what uses it (perhaps seekstack itself), or set server.port")]
    return [Check("port", OK, f"{host}:{port} is free")]


def tls_check(settings: Settings) -> list[Check]:
    tls = settings.server.tls
    if tls is None:
        loopback = settings.server.host in ("127.0.0.1", "::1", "localhost")
        return [Check("tls", OK if loopback else WARN, "off" + ("" if loopback else f" while listening on {settings.server.host}"),
                      "" if loopback else "set server.tls (cert, key) before exposing the gateway")]
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(Path(tls.cert).expanduser().read_bytes())
    except (OSError, ValueError) as exc:
        return [Check("tls", FAIL, f"cannot read {tls.cert}: {exc}", "point server.tls.cert at a PEM certificate")]
    left = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    until = cert.not_valid_after_utc.date().isoformat()
    if left.total_seconds() <= 0:
        return [Check("tls", FAIL, f"certificate expired on {until}", "renew it now")]
    if left.days < CERT_WARN_DAYS:
        return [Check("tls", WARN, f"certificate expires in {left.days} day(s), on {until}", "renew it before then")]
    return [Check("tls", OK, f"certificate valid until {until}")]


def secrets_check(settings: Settings) -> list[Check]:
    state = settings.state_path
    rows = []
    for path in [state / "admin.key", state / "pepper.key", state / "seekstack.db", *state.glob("audit*/*.key")]:
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            rows.append(Check("secrets", FAIL, f"{path} is readable by others ({oct(stat.S_IMODE(path.stat().st_mode))})",
                              f"chmod 600 {path}"))
    return rows or [Check("secrets", OK, "key files and databases are private (0600)")]


def audit_check(settings: Settings) -> list[Check]:
    from .governance.audit import verify_log
    from .governance.service import audit_dir

    directory = audit_dir(settings)
    if not (directory / "audit.db").exists():
        return [Check("audit", OK, "no audit log yet (made on first serve)")]
    verdict = verify_log(directory)
    if verdict.ok:
        return [Check("audit", OK, f"chain intact: {verdict.records} records, {verdict.checkpoints} signed checkpoint(s)")]
    return [Check("audit", FAIL, f"first bad record #{verdict.first_bad}: {verdict.problem}",
                  "keep a copy as evidence; see docs/security.md")]


def resources_check(settings: Settings) -> list[Check]:
    import psutil

    rows = []
    memory = psutil.virtual_memory()
    need = 0
    for model in settings.models:
        try:
            if model.engine != "remote":
                need += model.resolved_path().stat().st_size * model.replicas
        except Exception:
            pass
    status = OK if memory.available > need * 1.2 else WARN
    rows.append(Check("memory", status, f"{memory.available / 2**30:.1f} GiB available; model files need ~{need / 2**30:.1f} GiB",
                      "" if status == OK else "serve fewer replicas or a smaller quantization"))
    free = shutil.disk_usage(settings.state_path.parent if not settings.state_path.exists()
                             else settings.state_path).free
    rows.append(Check("disk", OK if free > 2 * 2**30 else WARN, f"{free / 2**30:.1f} GiB free for state and logs",
                      "" if free > 2 * 2**30 else "free disk space: the audit log must always be writable"))
    gpus = _nvidia_gpus()
    rows.append(Check("gpu", OK, ", ".join(gpus) if gpus else "no GPU (llama.cpp runs on the CPU)"))
    return rows


def _nvidia_gpus() -> list[str]:
    try:
        import pynvml  # optional: present on GPU machines

        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:
        return [line for line in os.popen("nvidia-smi -L 2>/dev/null").read().splitlines() if line.strip()]


CHECKS: list[Callable[[Settings], list[Check]]] = [config_check, port_check, tls_check, secrets_check, audit_check,
                                                   resources_check]


def run_checks(settings: Settings) -> list[Check]:
    rows = []
    for check in CHECKS:
        try:
            rows += check(settings)
        except Exception as exc:  # a broken check is itself a finding, not a crash
            rows.append(Check(check.__name__.removesuffix("_check"), WARN, f"could not check: {exc}"))
    return rows
