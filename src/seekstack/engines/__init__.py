"""Engines: kinds found by name (:mod:`.registry`), each a Backend (the request path, in the
engine's dialect) and, where seekstack starts it, a process (the lifecycle).

Importing this package loads no engine: the registry does, on first use.
"""

from .backend import Backend, EngineReply, Health, Load
from .capabilities import Capabilities
from .registry import EngineKind, all_kinds, engine_kind, register_engine

__all__ = ["Backend", "Capabilities", "EngineKind", "EngineReply", "Health", "Load", "all_kinds", "engine_kind",
           "register_engine"]
