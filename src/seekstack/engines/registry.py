"""Engine kinds, found by name: settings, the request-path Backend, the process, the launch command.

An engine kind registers one :class:`EngineKind` with :func:`register_engine`. The built-in kinds
and third-party ones are found the same way, through the ``seekstack.engines`` entry-point group
(an entry point names a module that registers its kind when imported)::

    [project.entry-points."seekstack.engines"]
    tgi = "seekstack_tgi"

The built-ins are also imported directly, so a source checkout without installed metadata works.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .settings import EngineSettings, register_settings

if TYPE_CHECKING:
    from .backend import Backend
    from .base import ProcessEngine
    from .launch import LaunchSpec

log = logging.getLogger("seekstack.engines")

GROUP = "seekstack.engines"
BUILTINS = ("seekstack.engines.llamacpp", "seekstack.engines.vllm", "seekstack.engines.sglang",
            "seekstack.engines.openai")


@dataclass(frozen=True)
class EngineKind:
    name: str
    settings: type[EngineSettings]
    backend: type["Backend"]
    process: type["ProcessEngine"] | None = None            # None: a server seekstack does not start
    launch: Callable[["LaunchSpec"], list[str]] | None = None  # the engine's own command line, from a plan
    needs_gpu: bool = False
    summary: str = ""


KINDS: dict[str, EngineKind] = {}
_loaded = False


def register_engine(kind: EngineKind) -> EngineKind:
    KINDS[kind.name] = kind
    register_settings(kind.settings)
    return kind


def load_plugins() -> None:
    """Import the built-in engine modules and every ``seekstack.engines`` entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTINS:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for entry in entry_points(group=GROUP):
        if entry.value in BUILTINS:
            continue
        try:
            entry.load()
        except Exception as exc:  # a broken plugin must not stop seekstack; say which and why
            log.warning("engine plugin %s (%s) failed to load: %s", entry.name, entry.value, exc)


def engine_kind(name: str) -> EngineKind:
    from .settings import settings_class

    kind = settings_class(name).model_fields["kind"].default  # raises ValueError naming the installed kinds
    load_plugins()
    return KINDS[kind]


def all_kinds() -> dict[str, EngineKind]:
    load_plugins()
    return dict(KINDS)


def missing_package(settings: EngineSettings) -> str | None:
    """Why this engine cannot start here (its package is not installed), with the fix; None when it can.

    One sentence for ``config check``, ``doctor`` and ``serve`` alike."""
    import importlib.util

    if not settings.launched or settings.simulated or settings.package is None:
        return None
    if importlib.util.find_spec(settings.package) is not None:
        return None
    return (f"engine {settings.kind} needs the Python package {settings.package!r}, which is not installed "
            f"— {settings.install} (or set engine.simulate: true to rehearse with `seekstack sim`)")
