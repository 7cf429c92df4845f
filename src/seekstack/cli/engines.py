"""`seekstack engines`: an engines-only host (a GPU server) — engines for gateways elsewhere.

Each configured model's engines start and are supervised here (heartbeat, restart with
backoff) as under `seekstack serve`, but no gateway runs: each engine listens on TCP at its
``engine.host`` / ``engine.port`` and requires the key in ``engine.api_key_file`` (or
``api_key_env``), which the gateways' config names too. Stops on SIGTERM / Ctrl-C. SIGHUP,
which reloads a gateway, does not stop it: an engine keeps its fixed port, so a changed
config is applied by a restart, while the gateways send its models' requests elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import typer

from ..config import Settings, check_settings, load_settings
from ..engines.http import EngineHTTP
from ..errors import ConfigError
from ..hostroles import role_problems
from ..observability.logs import configure_logging
from ..planner.admission import admit, derive
from ..planner.hardware import detect
from ..store import resolve_models
from ..supervisor import Supervisor
from .common import console

out = console()
log = logging.getLogger("seekstack.engines")


def engines(
    config: Path = typer.Option(..., "--config", "-c", help="seekstack.yaml of the engines this host runs (each with engine.host, engine.port and engine.api_key_file)."),
    force: bool = typer.Option(False, "--force", help="Start even when the planner says the models do not fit in memory."),
) -> None:
    """Start engines only, for gateways on other hosts (`seekstack gateway`); every request needs the engine's key."""
    settings = load_settings(config)
    problems = role_problems(settings, "engines")
    if not problems:
        for line in resolve_models(settings):
            out.print(f"[dim]{line}[/]", soft_wrap=True)
        problems = check_settings(settings)
    if problems:
        raise ConfigError(f"cannot start an engines host: {len(problems)} problem(s):\n  " + "\n  ".join(problems),
                          fix="fix them, then run `seekstack config check FILE`")
    hardware = detect()
    for line in derive(settings, hardware):
        out.print(f"[dim]{line}[/]", soft_wrap=True)
    admission = admit(settings, hardware)
    if admission is not None and not admission.fits and not force:
        raise ConfigError(f"cannot start: {admission.explain()}", fix=f"{admission.smallest_fix()}; or pass --force")
    configure_logging(settings.server.log_level, settings.server.log_format)
    asyncio.run(run_engines(settings))


async def run_engines(settings: Settings) -> None:
    http = EngineHTTP(read_timeout=settings.scheduler.timeout)
    supervisor = Supervisor(settings, http)  # every engine has a port (the role's rule): TCP, with its key
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: log.warning(  # its default would stop every engine here
        "SIGHUP: an engines host does not reload (each engine keeps its fixed port); restart it to apply a "
        "changed config — the gateways fail over to other endpoints meanwhile"))
    await supervisor.start()
    try:
        ready = await _wait(supervisor, settings.supervisor.startup_timeout, stop)
        for replica in supervisor.all():
            state = "ready" if replica.routable else replica.state
            out.print(f"{replica.name}: {replica.engine.base_url} ({replica.model.engine.kind}, {state})", soft_wrap=True)
        if ready:
            out.print("[bold green]engines ready[/]: list these addresses in the gateways' engine.endpoints, "
                      "with the same api_key_file", soft_wrap=True)
        await stop.wait()
    finally:
        await supervisor.stop()
        await http.close()


async def _wait(supervisor: Supervisor, timeout: float, stop: asyncio.Event) -> bool:
    waiting = asyncio.ensure_future(supervisor.wait_ready(timeout))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not waiting.done():
        waiting.cancel()
        return False
    return waiting.result()
