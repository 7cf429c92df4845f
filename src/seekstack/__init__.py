"""seekstack: private deployment of DeepSeek and other GGUF / Hugging Face models.

Public API (pinned by tests/test_public_api.py)::

    from seekstack import Settings, load_settings, build_app, Backend, Capabilities, EngineKind, SeekstackError
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import ModelConfig, Settings, load_settings
from .engines import Backend, Capabilities, EngineKind, register_engine
from .errors import SeekstackError
from .gateway.app import build_app

__all__ = [
    "__version__",
    "Backend",
    "Capabilities",
    "EngineKind",
    "ModelConfig",
    "SeekstackError",
    "Settings",
    "build_app",
    "load_settings",
    "register_engine",
]
