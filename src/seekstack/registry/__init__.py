"""The registry of deployments (:mod:`.registry`) and the sources that fill it."""

from .registry import (MODEL_DOWN, MODEL_READY, MODEL_STARTING, MODEL_UNLOADED, Deployment, Registry, Source)

__all__ = ["Deployment", "MODEL_DOWN", "MODEL_READY", "MODEL_STARTING", "MODEL_UNLOADED", "Registry", "Source"]
