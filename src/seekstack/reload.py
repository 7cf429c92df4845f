"""Hot reload: apply a changed config file to a running gateway, or refuse it whole.

``seekstack config reload``, ``POST /admin/v1/config/reload`` and SIGHUP all come here. The
file is read and checked as at start (every problem at once, the host role's rules, store
models resolved and verified) in a worker thread; if anything is wrong, nothing changes and
every problem is listed. Otherwise the models are diffed against what was configured — the
entries as written, before `serve` derived unset sizes — and the supervisor applies the
difference without dropping a request in flight (:meth:`Supervisor.apply`). Other sections
(server, auth, audit…) are read at start only: a change there is listed as needing a restart.

Under ``serve --workers N`` a worker asked to reload (the admin API, SIGHUP) hands the request
to its leader (:mod:`.control`), which reads its own config file, applies it to the engines it
runs and then tells every worker to apply the config it rewrote for it
(``cli/workers.py``); the answer is the leader's.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import anyio

from . import control
from .config import Settings, check_config, load_settings
from .errors import ConfigError, SeekstackError
from .hostroles import Role, role_problems

if TYPE_CHECKING:
    from .config import ModelConfig

Apply = Callable[["list[ModelConfig]", "set[str]"], Awaitable[dict[str, list[str]]]]

log = logging.getLogger("seekstack.reload")


# How the gateway routes a model's requests, not how its engines run: a change to these alone
# takes effect at once and leaves the engines as they are.
ROUTING_ONLY = frozenset({"fallbacks", "fallback_on"})


def as_configured(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each model entry as written (call before sizes are derived), without its routing: what a
    reload compares to know which engines to replace."""
    return {m.name: m.model_dump(mode="json", exclude=set(ROUTING_ONLY)) for m in settings.models}


def rerouted(running: "ModelConfig", new: "ModelConfig") -> "ModelConfig":
    """A model whose engines keep running as they are, routed as ``new`` says."""
    return running.model_copy(update={name: getattr(new, name) for name in ROUTING_ONLY})


class Reloader:
    def __init__(self, config_path: Path | None, role: Role, settings: Settings, leader: Path | None = None):
        self.config_path = config_path
        self.role = role
        self.settings = settings
        self.leader = leader  # a --workers worker: its leader's control socket, which reloads for all
        self.configured = as_configured(settings)
        self.sections = _sections(settings)
        self.apply: Apply | None = None  # how models are put in force: set once engines are supervised
        self.checks: list[Callable[[Settings], list[str]]] = []  # what else a new config must pass (--workers)
        self.sized_checks: list[Callable[[Settings], list[str]]] = []  # once sizes are derived (the memory plan)
        self._lock = asyncio.Lock()

    async def reload(self) -> dict[str, Any]:
        """Apply the config file again (a worker: ask its leader to, for every worker)."""
        if self.leader is not None:
            return await control.ask(self.leader, "reload", self.settings.supervisor.startup_timeout + 60)
        return await self.reload_here()

    async def reload_here(self) -> dict[str, Any]:
        """Apply this process's config file to what this process supervises."""
        if self.config_path is None or self.apply is None:
            raise ConfigError("this gateway was started without a config file: there is nothing to reload",
                              fix="start it with --config FILE, then edit that file and reload")
        async with self._lock:  # one at a time: a second waits and applies the file as it is then
            new, configured = await anyio.to_thread.run_sync(self._read)
            changed = {name for name, entry in configured.items() if name in self.configured
                       and entry != self.configured[name]}
            added_or_changed = [m for m in new.models if m.name in changed or m.name not in self.configured]
            running = {m.name: m for m in self.settings.models}  # as they run: with the sizes derived for them
            fresh = {m.name for m in added_or_changed}
            kept = {m.name: m for m in new.models if m.name in running and m.name not in fresh}
            routing = [name for name, m in kept.items()
                       if any(getattr(m, field) != getattr(running[name], field) for field in ROUTING_ONLY)]
            new.models = [rerouted(running[m.name], m) if m.name in kept else m for m in new.models]
            problems = await anyio.to_thread.run_sync(self._size, new, added_or_changed)
            if problems:
                raise _refused(self.config_path, problems)
            result = await self.apply(new.models, changed)
            result["rerouted"] = routing  # only their fallbacks changed: in force now, engines untouched
            failed = set(result["failed"])  # these keep serving as they were configured before
            self.configured = {name: self.configured[name] if name in failed else entry for name, entry in configured.items()}
            self.settings.models = in_force(self.settings.models, new.models, failed)
            sections = _sections(new)
            result["restart_needed"] = [name for name, value in sections.items() if value != self.sections.get(name)]
            log.info("config reloaded from %s: %s", self.config_path, result)
            return result

    def _read(self) -> tuple[Settings, dict[str, dict[str, Any]]]:
        from .store import resolve_models

        assert self.config_path is not None
        problems = check_config(self.config_path)
        if not problems:
            settings = load_settings(self.config_path)
            problems = role_problems(settings, self.role) + [p for check in self.checks for p in check(settings)]
        if problems:
            raise _refused(self.config_path, problems)
        resolve_models(settings)  # store models: verified and trusted, or refused (ConfigError)
        return settings, as_configured(settings)

    def _size(self, new: Settings, models: list) -> list[str]:
        """Derive the unset sizes of ``models`` as `serve` does; then what the sized config fails."""
        if models:
            _derive(new, models)
        return [p for check in self.sized_checks for p in check(new)]


def _refused(path: Path | None, problems: list[str]) -> ConfigError:
    return ConfigError(f"{path}: the new config was refused whole ({len(problems)} problem(s)); "
                       "the running one stays:\n  " + "\n  ".join(problems),
                       fix="fix them (`seekstack config check FILE` lists them), then reload again")


async def reload_on_signal(reloader: Reloader) -> None:
    """SIGHUP: apply the config file again (the outcome goes to the log; nothing else waits for it)."""
    try:
        await reloader.reload()  # logs what changed
    except SeekstackError as exc:
        log.error("SIGHUP reload refused: %s", exc.message)


def in_force(running: "list[ModelConfig]", new: "list[ModelConfig]", failed: set[str]) -> "list[ModelConfig]":
    """The models served after applying ``new``: a model that failed to change keeps its running config."""
    before = {m.name: m for m in running}
    return [before[m.name] if m.name in failed else m for m in new]


def _sections(settings: Settings) -> dict[str, Any]:
    """Every section but the models, as read from the file (before command-line overrides)."""
    return {name: value for name, value in settings.model_dump(mode="json").items() if name != "models"}


def _derive(settings: Settings, models: list) -> None:
    """Size the new and changed llama.cpp models as `serve` does, counting only them."""
    from .planner.admission import derive

    derive(settings.model_copy(update={"models": models}))
