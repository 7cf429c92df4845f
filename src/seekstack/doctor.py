"""`seekstack doctor`: checks of the machine and the configuration, each OK / WARN / FAIL with its fix.

Checks are data: a list of functions taking the settings and returning :class:`Check` rows,
so more (drivers, CUDA, model integrity, memory planning) slot in as more functions.
"""

from __future__ import annotations

import datetime as dt
import shutil
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
    from .errors import ConfigError
    from .store import resolve_models

    try:
        rows = [Check("store", OK, line) for line in resolve_models(settings)]
    except ConfigError as exc:
        return [Check("store", FAIL, exc.message, exc.fix or "")]
    problems = check_settings(settings)
    if rows and not problems:
        return rows + [Check("configuration", OK, f"{len(settings.models)} model(s), valid")]
    if not problems:
        return [Check("configuration", OK, f"{len(settings.models)} model(s), valid")]
    return [Check("configuration", FAIL, p.split(" — ")[0], p.split(" — ")[1] if " — " in p else "") for p in problems]


def port_check(settings: Settings) -> list[Check]:
    from . import ports
    from .cli.common import running_server

    running = running_server(settings)
    if running is not None:  # this state directory's own serve: its port is in use, as it should be
        return [Check("port", OK, f"seekstack serve (PID {running['pid']}) is listening on "
                                  f"{running.get('host')}:{running.get('port')}")]
    host, port = settings.server.host, settings.server.port
    if ports.in_use(host, port):
        return [Check("port", WARN, f"{host}:{port} is in use by {ports.describe_holder(port)}",
                      "stop it, or serve on another port: --port N (or SEEKSTACK_SERVER__PORT=N)")]
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
    from .governance.audit_verify import verify_log
    from .governance.service import audit_dir

    directory = audit_dir(settings)
    if not (directory / "audit.db").exists() and not (directory / "audit-chain.key").exists():
        return [Check("audit", OK, "no audit log yet (made on first serve)")]
    verdict = verify_log(directory)
    if verdict.ok:
        return [Check("audit", OK, f"chain intact: {verdict.records} records, {verdict.checkpoints} signed checkpoint(s)")]
    where = f"first bad record #{verdict.first_bad}: " if verdict.first_bad is not None else ""
    return [Check("audit", FAIL, f"{where}{verdict.problem}",
                  "keep a copy as evidence; see docs/security.md")]


def hardware_check(settings: Settings) -> list[Check]:
    from .planner.hardware import detect

    info = detect()
    features = ", ".join(info["cpu_features"]) or "no AVX2"
    status = OK if "AVX2" in info["cpu_features"] else WARN
    return [Check("cpu", status, f"{info['cpu_model'] or 'unknown CPU'}: {info['cores']} cores, {features}, "
                                 f"{info['ram_bytes'] / 2**30:.1f} GiB RAM",
                  "" if status == OK else "llama.cpp is several times slower without AVX2: use a newer CPU or a GPU")]


# The oldest CUDA driver API each engine's wheels run on (vLLM and SGLang ship CUDA 12 builds).
MIN_CUDA = {"vllm": (12, 1), "sglang": (12, 1)}


def gpu_check(settings: Settings) -> list[Check]:
    from .planner.hardware import amd_gpus, nvidia_gpus

    gpus = nvidia_gpus()
    needs_gpu = sorted({m.engine.kind for m in settings.models
                        if m.engine.kind in MIN_CUDA and m.engine.launched and not m.engine.simulated})
    rows = []
    amd = amd_gpus()
    if not gpus and not amd:
        if needs_gpu:
            return [Check("gpu", FAIL, f"no GPU, but {', '.join(needs_gpu)} needs an NVIDIA GPU",
                          "install the NVIDIA driver, or serve these models with engine: llamacpp")]
        return [Check("gpu", OK, "no GPU (llama.cpp runs on the CPU)")]
    for g in gpus:
        links = f", {g['nvlinks']} NVLink links" if g.get("nvlinks") else ", no NVLink"
        rows.append(Check("gpu", OK, f"GPU {g['index']}: {g['name']}, {g['memory_bytes'] / 2**30:.0f} GiB, "
                                     f"driver {g['driver']}, CUDA {g['cuda']}{links}"))
    if gpus:
        cuda = tuple(int(x) for x in gpus[0]["cuda"].split("."))
        for engine in needs_gpu:
            if cuda < MIN_CUDA[engine]:
                need = ".".join(map(str, MIN_CUDA[engine]))
                rows.append(Check("cuda", FAIL, f"the driver supports CUDA {gpus[0]['cuda']}; {engine} needs CUDA {need} or newer",
                                  "update the NVIDIA driver (535 or newer), or serve with engine: llamacpp"))
    rows += [Check("gpu", OK, f"AMD: {name}") for name in amd]
    return rows


def engines_check(settings: Settings) -> list[Check]:
    """Which engine kinds can run here, and why not: their package installed, an NVIDIA GPU present.
    A missing package is said in the same sentence as `config check` and `serve` say it."""
    from .engines.registry import all_kinds, missing_package
    from .planner.hardware import nvidia_gpus

    gpu = bool(nvidia_gpus())
    used = {m.engine.kind for m in settings.models if m.engine.launched and not m.engine.simulated}
    rows = []
    for name, kind in sorted(all_kinds().items()):
        if kind.process is None:
            rows.append(Check("engine", OK, f"{name}: usable ({kind.summary})"))
            continue
        probe = kind.settings.model_construct(kind=name)  # defaults only: is it installed here?
        missing = missing_package(probe)
        why = ["not installed"] if missing else []
        if kind.needs_gpu and not gpu:
            why.append("no NVIDIA GPU")
        if not why:
            rows.append(Check("engine", OK, f"{name}: usable here ({kind.summary})"))
            continue
        status = FAIL if name in used else OK
        detail = f"{name}: not usable here ({' and '.join(why)})" + (" — the config uses it" if name in used else "")
        fix = missing.partition(" — ")[2] if missing else "serve it on a GPU host, or use engine: llamacpp"
        rows.append(Check("engine", status, detail, fix))
    return rows


def models_check(settings: Settings) -> list[Check]:
    """Every configured model file is there and is a complete GGUF (its header and tensor table read)."""
    from .errors import SeekstackError
    from .planner.gguf import read_header

    rows = []
    for model in settings.models:
        if model.engine.kind != "llamacpp" or model.engine.simulated:
            continue
        try:
            path = model.resolved_path()
            header = read_header(path)
        except SeekstackError as exc:
            rows.append(Check("model", FAIL, f"{model.name}: {exc.message}", exc.fix or ""))
            continue
        rows.append(Check("model", OK, f"{model.name}: GGUF v{header.version} {header.architecture}, "
                                       f"{header.tensor_count} tensors, {header.tensor_bytes / 1e9:.2f} GB of weights"))
    return rows


def memory_check(settings: Settings) -> list[Check]:
    """The planner's memory for every model and replica together, against what is available (models
    with a keep_alive counted as the largest of them: they take turns)."""
    from .planner.admission import admit

    admission = admit(settings)
    if admission is None:
        return [Check("memory", OK, "no local engines to plan")]
    detail = f"models need {admission.need_bytes / 2**30:.2f} GiB of {admission.budget_bytes / 2**30:.2f} GiB ({admission.where})"
    if admission.sharing():  # they fit only by taking turns
        detail += f", with {', '.join(admission.on_demand())} (keep_alive) taking turns ({admission.all_bytes / 2**30:.2f} GiB all at once)"
    if not admission.fits:
        return [Check("memory", FAIL, detail, admission.smallest_fix())]
    if admission.need_bytes > 0.8 * admission.budget_bytes:
        return [Check("memory", WARN, detail + ": less than 20 % headroom", "expect swapping under load; see `seekstack plan`")]
    return [Check("memory", OK, detail)]


def disk_check(settings: Settings) -> list[Check]:
    free = shutil.disk_usage(settings.state_path.parent if not settings.state_path.exists()
                             else settings.state_path).free
    return [Check("disk", OK if free > 2 * 2**30 else WARN, f"{free / 2**30:.1f} GiB free for state and logs",
                  "" if free > 2 * 2**30 else "free disk space: the audit log must always be writable")]


CHECKS: list[Callable[[Settings], list[Check]]] = [config_check, port_check, tls_check, secrets_check, audit_check,
                                                   hardware_check, gpu_check, engines_check, models_check, memory_check,
                                                   disk_check]


def run_checks(settings: Settings) -> list[Check]:
    rows = []
    for check in CHECKS:
        try:
            rows += check(settings)
        except Exception as exc:  # a broken check is itself a finding, not a crash
            rows.append(Check(check.__name__.removesuffix("_check"), WARN, f"could not check: {exc}"))
    return rows
