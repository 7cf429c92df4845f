"""`seekstack serve`: start the engines and the gateway; drain and stop everything on SIGTERM/Ctrl-C."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import json
import os
import signal
import socket
import ssl
from pathlib import Path
from typing import Optional

import typer
import uvicorn

from .. import __version__, control, ports, statelock
from ..config import Settings, check_settings, find_config_file, load_settings
from ..errors import ConfigError
from ..gateway.app import build_app
from ..gateway.connections import bounded_protocol
from ..governance.service import admin_key_path, audit_dir
from ..hostroles import Role, role_problems
from ..reload import Reloader, reload_on_signal
from ..observability.logs import UVICORN_LOG_CONFIG, configure_logging
from ..planner.admission import admit, derive
from ..planner.hardware import detect
from ..store import resolve_models
from .common import console
from .workers import REUSE_PORT_ENV, check_workers, run_leader

out = console()
settings_lock: list[Path | None] = [None]  # this process's state lock, rewritten with the bound port


def serve(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="seekstack.yaml to serve (default: ./seekstack.yaml if present, else the embedded SmolLM2-135M)."),
    host: Optional[str] = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, "--port", "-p", help="Port (default 8800; 0 picks a free one)."),
    force: bool = typer.Option(False, "--force", help="Start even when the planner says the models do not fit in memory."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="Gateway processes on one port (SO_REUSEPORT), engines supervised once; needs quotas.store: redis."),
) -> None:
    """Start engines and the OpenAI/DeepSeek-compatible gateway (loopback only by default)."""
    start(config, "serve", host, port, force, workers)


def gateway(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="seekstack.yaml whose models name their engines (engine.url / engine.endpoints)."),
    host: Optional[str] = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, "--port", "-p", help="Port (default 8800; 0 picks a free one)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="Gateway processes on one port (SO_REUSEPORT); needs quotas.store: redis."),
) -> None:
    """Start a gateway only: every model's engines run on other hosts (several gateways share one database)."""
    start(config, "gateway", host, port, force=False, workers=workers)


def start(config: Path | None, role: Role, host: str | None, port: int | None, force: bool, workers: int = 1) -> None:
    settings = load_settings(config)
    leader = os.environ.get(control.LEADER_ENV)  # a --workers worker: reloads are its leader's
    reloader = Reloader(find_config_file(config), role, settings,  # the models as written, before sizes are derived
                        leader=Path(leader) if leader else None)
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    problems = role_problems(settings, role) + check_workers(settings, workers)
    if problems:
        raise ConfigError(f"cannot start a {role} host: {len(problems)} problem(s):\n  " + "\n  ".join(problems),
                          fix="fix them, then run `seekstack config check FILE`")
    # One writer per audit chain: gateways may share a state_dir only with an audit.dir each.
    settings_lock[0] = statelock.hold(audit_dir(settings), host=settings.server.host, port=settings.server.port)
    if not os.environ.get(REUSE_PORT_ENV) and ports.in_use(settings.server.host, settings.server.port):
        raise ConfigError(f"{settings.server.host}:{settings.server.port} is already in use by "
                          f"{ports.describe_holder(settings.server.port)}",
                          fix="stop it, or serve on another port: --port N (or SEEKSTACK_SERVER__PORT=N)")
    for line in resolve_models(settings):  # store models: verified (fast check) and trusted, or refused
        out.print(f"[dim]{line}[/]", soft_wrap=True)
    problems = check_settings(settings)
    if problems:
        raise ConfigError(f"cannot serve: {len(problems)} problem(s):\n  " + "\n  ".join(problems),
                          fix="fix them, then run `seekstack config check FILE`")
    hardware = detect()  # once, for both the derived sizes and the admission check
    for line in derive(settings, hardware):
        out.print(f"[dim]{line}[/]", soft_wrap=True)
    admission = admit(settings, hardware)
    if admission is not None and not admission.fits:
        if not force:
            raise ConfigError(f"cannot serve: {admission.explain()}",
                              fix=f"{admission.smallest_fix()}; or pass --force to try anyway")
        out.print(f"[yellow]warning: --force: {admission.explain()}[/]", soft_wrap=True)
    elif admission is not None and admission.sharing():
        out.print(f"[dim]{admission.sharing()}[/]", soft_wrap=True)
    configure_logging(settings.server.log_level, settings.server.log_format)
    # A fatal signal (SIGBUS from a store file truncated under its memory map, SIGSEGV) leaves a
    # line on stderr naming it and where it struck, instead of a silent death.
    faulthandler.enable(all_threads=False)
    main = run_leader(settings, workers, settings_lock[0], reloader) if workers > 1 else run_server(settings, reloader)
    try:
        import uvloop

        uvloop.run(main)
    except ImportError:  # pragma: no cover
        asyncio.run(main)


async def run_server(settings: Settings, reloader: Reloader | None = None) -> None:
    tls = settings.server.tls
    if tls:  # before anything is opened or logged: a bad certificate is one line
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot use the TLS certificate or key: {exc}",
                              fix="check server.tls.cert / key (PEM, matching pair, readable)") from None
    app = build_app(settings, reloader=reloader)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP,
                                                  lambda: asyncio.ensure_future(reload_on_signal(app.state.reloader)))
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        loop="none",
        # httptools, with a deadline for request headers and a bound on open connections
        http=bounded_protocol(settings.server.header_timeout, settings.server.max_connections),
        lifespan="on",
        access_log=False,  # the guard writes one access line per request, with its ids
        # X-Forwarded-* only from the proxies the operator named: otherwise any local process
        # could write another client's address into the audit log (uvicorn trusts 127.0.0.1).
        proxy_headers=bool(settings.server.trusted_proxies),
        forwarded_allow_ips=settings.server.trusted_proxies or None,
        log_config=UVICORN_LOG_CONFIG,
        log_level=settings.server.log_level,
        timeout_graceful_shutdown=max(int(settings.server.drain_timeout), 1),
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        ssl_ca_certs=str(tls.client_ca) if tls and tls.client_ca else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.client_ca else ssl.CERT_NONE,
    )
    if tls:
        try:
            config.load()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot use the TLS certificate or key: {exc}",
                              fix="check server.tls.cert / key (PEM, matching pair, readable)") from None
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    server = uvicorn.Server(config)
    announce = asyncio.create_task(_announce_when_ready(server, app, settings))
    control_socket = os.environ.get(control.CONTROL_ENV)  # a --workers worker's, for its leader
    answering = asyncio.create_task(_answer_the_leader(server, app, Path(control_socket))) if control_socket else None
    try:
        await server.serve(sockets=[_shared_socket(settings)] if os.environ.get(REUSE_PORT_ENV) else None)
    finally:
        announce.cancel()
        if answering is not None:
            answering.cancel()
    if not server.started:
        raise ConfigError(f"could not listen on {settings.server.host}:{settings.server.port}",
                          fix="pick a free port with --port, or stop what is using it")


async def _announce_when_ready(server: uvicorn.Server, app, settings: Settings) -> None:
    while not server.started:
        await asyncio.sleep(0.05)
    ready = await app.state.supervisor.wait_ready(settings.supervisor.startup_timeout)
    freeze_startup_heap()
    sock = server.servers[0].sockets[0].getsockname()
    if settings_lock[0] is not None:
        statelock.record(settings_lock[0], pid=os.getpid(), host=sock[0], port=sock[1])
    scheme = "https" if settings.server.tls else "http"
    base = f"{scheme}://{_display_host(sock[0])}:{sock[1]}"
    first = settings.models[0]
    path, body = {  # a request the first model answers
        "chat": ("chat/completions", {"model": first.name, "messages": [{"role": "user", "content": "Hello!"}]}),
        "embeddings": ("embeddings", {"model": first.name, "input": "Hello!"}),
        "rerank": ("rerank", {"model": first.name, "query": "capital of France",
                              "documents": ["Paris is the capital of France.", "Berlin is in Germany."]}),
    }[first.task]
    names = ", ".join(m.name for m in settings.models)
    if ready:
        out.print(f"[bold green]seekstack {__version__}[/] serving [bold]{names}[/] at [bold]{base}/v1[/]")
    else:
        out.print(f"[yellow]seekstack {__version__} listening at {base}/v1, but not every model is ready; see `seekstack ps`[/]")
    auth = ""
    if settings.auth.enabled:
        key_file = admin_key_path(settings)
        if app.state.bootstrap_key and out.is_terminal:
            out.print(f"[bold]Created the first admin key[/] (shown once; also saved, mode 0600, in {key_file}):")
            out.print(f"  {app.state.bootstrap_key}", soft_wrap=True)
        elif app.state.bootstrap_key:  # output captured by a log (systemd, docker, a file): never write the key there
            out.print(f"[bold]Created the first admin key[/]: it is in {key_file} (mode 0600); not printed, "
                      "because this output is not a terminal and keys do not belong in logs", soft_wrap=True)
        if app.state.bootstrap_key:
            out.print(f"[dim]The security admin's key (people, keys, limits) is in "
                      f"{key_file.with_name('security-admin.key')} and the auditor's in "
                      f"{key_file.with_name('auditor.key')}: hand each to its own person.[/]", soft_wrap=True)
        auth = f' -H "Authorization: Bearer $(cat {key_file})"'
    else:
        out.print("[yellow]auth is off (loopback only): every local process can use this server[/]")
    out.print("Try it:", style="dim")
    out.print(f"  curl {base}/v1/{path}{auth} -H 'Content-Type: application/json' -d '{json.dumps(body)}'",
              soft_wrap=True)
    out.print("Stop with Ctrl-C (in-flight requests finish first).", style="dim")


async def _answer_the_leader(server: uvicorn.Server, app, path: Path) -> None:
    """A `--workers` worker, once started: apply the config its leader rewrote, and say when
    the endpoints that left it have drained (cli/workers.py)."""
    while not server.started:
        await asyncio.sleep(0.05)
    listening = await control.listen(path, {"reload": app.state.reloader.reload_here,
                                            "drained": app.state.supervisor.drained})
    try:
        await asyncio.Event().wait()  # until the server stops
    finally:
        listening.close()


def _shared_socket(settings: Settings) -> socket.socket:
    """The listening address, bound with SO_REUSEPORT: every `--workers` process binds it too."""
    family = socket.AF_INET6 if ":" in settings.server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.server.host, settings.server.port))
    return sock


def freeze_startup_heap() -> None:
    """Move everything built at start-up into the collector's permanent generation.

    Modules, the app, pydantic models and compiled patterns live as long as the process; a
    full (generation 2) collection would walk all of them — 80–120 ms on this machine, a
    stall for every request in flight. Frozen, they are skipped, and full collections only
    walk what requests left behind."""
    gc.collect()
    gc.freeze()


def _display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
