"""Engines: the small Engine interface and its built-in implementations."""

from .base import ENGINES, Capabilities, Engine, ProcessEngine, register_engine
from . import llamacpp as _llamacpp  # noqa: F401  (registers "llamacpp")
from . import remote as _remote  # noqa: F401  (registers "remote")

__all__ = ["ENGINES", "Capabilities", "Engine", "ProcessEngine", "register_engine"]
