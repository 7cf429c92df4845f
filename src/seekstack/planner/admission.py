"""Admission control: before ``serve`` loads anything, plan every configured model against this
machine — all models and all their replicas together — and refuse what cannot fit, with the
numbers and the smallest fix, instead of an out-of-memory crash halfway through loading.

The budget is ``supervisor.memory_budget_gb`` when set, else the memory available now (RAM on
a CPU machine; free memory of the GPUs when NVML sees some, with llama.cpp's layers on them).
Engines seekstack does not start (``remote``) take nothing. ``serve --force`` goes ahead anyway.

Models with a ``keep_alive`` load on demand (traffic/keep_alive.py), so they need not all fit at
once: what must fit is every other model plus the largest of them. When they do not all fit,
a request for one that is unloaded first unloads the least recently used idle one; the
:class:`Room` below is the plan that decision reads while the gateway runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelConfig, Settings
from ..errors import SeekstackError
from .catalog import spec_from_gguf
from .hardware import GIB, detect, parse_hardware
from .plan import BATCH, Plan, embedding_batch, make_plan


@dataclass
class Admission:
    plans: list[tuple[ModelConfig, Plan]]
    need_bytes: float       # what must fit at once: the always-loaded models and the largest on-demand one
    budget_bytes: float
    where: str
    all_bytes: float = 0.0  # every model loaded at once

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.budget_bytes

    @property
    def all_fit(self) -> bool:
        return self.all_bytes <= self.budget_bytes

    def on_demand(self) -> list[str]:
        return [m.name for m, _ in self.plans if m.keep_alive is not None]

    def sharing(self) -> str | None:
        """When the models fit only by taking turns: one line saying which and how."""
        if not self.fits or self.all_fit:
            return None
        return (f"the models need {self.all_bytes / GIB:.2f} GiB loaded all at once, and {self.budget_bytes / GIB:.2f} GiB "
                f"is planned ({self.where}): {', '.join(self.on_demand())} (keep_alive) load on demand, taking turns "
                "— a request for one that is unloaded first unloads the least recently used idle one")

    def explain(self) -> str:
        shared = " (models with keep_alive counted as the largest of them: they take turns)" if self.on_demand() else ""
        lines = [f"the models need {self.need_bytes / GIB:.2f} GiB{shared} but {self.budget_bytes / GIB:.2f} GiB is "
                 f"available ({self.where}):"]
        for model, plan in self.plans:
            lines.append(f"  {model.name}: {model.replicas} × ({plan.weights_bytes / GIB:.2f} weights + "
                         f"{plan.kv_bytes / GIB:.2f} KV for context {model.context} × {model.slots} slots + "
                         f"{plan.overhead_bytes / GIB:.2f} overhead + {plan.prompt_cache_bytes / GIB:.2f} prompt cache) = "
                         f"{model.replicas * plan.total_bytes / GIB:.2f} GiB")
        return "\n".join(lines)

    def smallest_fix(self) -> str:
        """The one change to the largest consumer that would make the whole set fit."""
        model, plan = max(self.plans, key=lambda mp: mp[0].replicas * mp[1].total_bytes)
        excess = self.need_bytes - self.budget_bytes
        if plan.prompt_cache_bytes * model.replicas >= excess:  # the cheapest thing to give up
            keep = int((plan.prompt_cache_bytes - excess / model.replicas) // 2**20)
            return f"set prompt_cache_mib: {max(keep, 0)} for {model.name}"
        per_replica_kv = plan.kv_bytes
        if per_replica_kv * model.replicas > excess:
            keep = 1 - excess / (per_replica_kv * model.replicas)
            context = int(model.context * keep) // 256 * 256
            if context >= 512:
                return f"set context: {context} (or fewer slots) for {model.name}"
        if model.replicas > 1 and plan.total_bytes * (model.replicas - 1) >= excess:
            fewer = model.replicas - int(-(-excess // plan.total_bytes))
            return f"set replicas: {max(fewer, 1)} for {model.name}"
        return self._turns_fix() or f"serve {model.name} with a smaller quantization, or free memory (see `seekstack plan`)"

    def _turns_fix(self) -> str | None:
        """Giving a keep_alive to the fewest models always loaded now (the largest first), so that
        they take turns with the others: when that is enough."""
        sizes = [(m, m.replicas * p.total_bytes) for m, p in self.plans]
        always = sorted(((m, b) for m, b in sizes if m.keep_alive is None), key=lambda mb: -mb[1])
        turns, moved = [b for m, b in sizes if m.keep_alive is not None], []
        for i, (model, size) in enumerate(always):
            moved.append(model.name)
            turns.append(size)
            if len(turns) >= 2 and sum(b for _, b in always[i + 1:]) + max(turns) <= self.budget_bytes:
                return (f"set keep_alive (seconds idle) for {', '.join(moved)}: models with a keep_alive take turns "
                        "in memory")
        return None


def admit(settings: Settings, info: dict | None = None, within: "Room | None" = None) -> Admission | None:
    """Plan the configured llama.cpp models; None when there is nothing to plan. ``within``: against
    the plan a running gateway made at start (a reload), instead of the machine now."""
    local = _started_here(settings)
    if not local:
        return None
    if within is not None:
        hw, (budget, where) = within.hw, (within.budget_bytes, within.where)
    else:
        info = info if info is not None else detect()
        hw = parse_hardware("auto", info)
        budget, where = _budget(settings, local, hw, info)
    plans = [(model, _plan(model, hw)) for model in local]
    always = sum(m.replicas * p.total_bytes for m, p in plans if m.keep_alive is None)
    on_demand = [m.replicas * p.total_bytes for m, p in plans if m.keep_alive is not None]
    return Admission(plans, always + max(on_demand, default=0.0), budget, where, always + sum(on_demand))


def memory_problems(settings: Settings, within: "Room") -> list[str]:
    """A reload's models against the memory plan made at start: what `serve` would refuse."""
    admission = admit(settings, within=within)
    if admission is None or admission.fits:
        return []
    return [f"memory: {admission.explain()}\n  fix: {admission.smallest_fix()}"]


def _started_here(settings: Settings) -> list[ModelConfig]:
    """The llama.cpp models whose engines this host starts: what takes its memory (one at ``url`` /
    ``endpoints`` / ``discover`` runs elsewhere, with a model file this host does not have)."""
    return [m for m in settings.models if _is_started_here(m)]


def _is_started_here(model: ModelConfig) -> bool:
    return model.engine.kind == "llamacpp" and model.engine.launched


def _plan(model: ModelConfig, hw) -> Plan:
    """One replica of a llama.cpp model, as configured, on this hardware."""
    return make_plan(_spec(model.resolved_path()), hw, quant_name="file", context=model.context,
                     concurrency=model.slots, engine="llamacpp", prompt_cache_bytes=model.prompt_cache_mib * 2**20,
                     batch=embedding_batch(model.context) if model.pooled else BATCH)


def _budget(settings: Settings, local: list[ModelConfig], hw, info: dict) -> tuple[float, str]:
    """The memory the engines may use in all, and where that figure comes from."""
    budget_gb = settings.supervisor.memory_budget_gb
    if budget_gb is not None:
        return budget_gb * 1e9, "supervisor.memory_budget_gb"
    if hw.is_gpu and all(m.device != "cpu" for m in local):
        return hw.device.memory_gb * 1e9 * hw.gpus * 0.95, f"{hw.label} memory"
    return float(info["available_bytes"]), "RAM available now"


@dataclass
class Room:
    """The memory plan while the gateway runs: the budget fixed at start, and what each model
    takes loaded (all its replicas; 0 for engines the planner does not size)."""
    budget_bytes: float
    where: str
    hw: Any

    def bytes_of(self, model: ModelConfig) -> float:
        if not _is_started_here(model):
            return 0.0
        try:
            return model.replicas * _plan(model, self.hw).total_bytes
        except (OSError, ValueError, SeekstackError):  # its file went away or changed: its engine says so when it starts
            return 0.0


def room(settings: Settings, info: dict | None = None) -> Room:
    """The plan :class:`Room` reads, made before any engine starts (the budget is then the memory
    available to all of them)."""
    info = info if info is not None else detect()
    hw = parse_hardware("auto", info)
    local = _started_here(settings)
    return Room(*_budget(settings, local, hw, info), hw)


@functools.lru_cache(maxsize=64)
def _cached_spec(path: str, mtime: float):
    return spec_from_gguf(Path(path))


def _spec(path: Path):
    return _cached_spec(str(path), path.stat().st_mtime)


CONTEXT_CAP = 4096   # derived context: the model's trained context, at most this
DEFAULT_SLOTS = 4
MIN_CONTEXT = 512


def derive(settings: Settings, info: dict | None = None) -> list[str]:
    """Choose ``context``, ``slots`` and ``prompt_cache_mib`` for llama.cpp models that leave them
    unset: the model's trained context (at most 4096) × 4 slots with a 256 MiB prompt cache; until
    everything fits the budget, the prompt cache is halved first (then dropped), then the context —
    the largest first —, then slots. Returns one line per model saying what was chosen."""
    ctx_open = [m for m in _started_here(settings) if "context" not in m.model_fields_set]
    slots_open = [m for m in _started_here(settings) if "slots" not in m.model_fields_set]
    cache_open = [m for m in _started_here(settings) if "prompt_cache_mib" not in m.model_fields_set]
    if not ctx_open and not slots_open:
        return []
    info = info if info is not None else detect()
    for m in ctx_open:
        m.context = max(MIN_CONTEXT, min(_spec(m.resolved_path()).max_context, CONTEXT_CAP))
    for m in slots_open:
        m.slots = DEFAULT_SLOTS
    while True:
        admission = admit(settings, info)
        if admission is None or admission.fits:
            break
        caches = [m for m in cache_open if m.prompt_cache_mib > 0]
        if caches:
            biggest = max(caches, key=lambda m: m.replicas * m.prompt_cache_mib)
            biggest.prompt_cache_mib = biggest.prompt_cache_mib // 2 if biggest.prompt_cache_mib > 16 else 0
            continue
        weights = {id(m): m.replicas * p.kv_bytes for m, p in admission.plans}
        shrinkable = [m for m in ctx_open if m.context > MIN_CONTEXT]
        if shrinkable:
            biggest = max(shrinkable, key=lambda m: weights[id(m)])
            biggest.context = max(MIN_CONTEXT, biggest.context // 2)
            continue
        fewer = [m for m in slots_open if m.slots > 1]
        if not fewer:
            break  # nothing left to give: admission refuses with the numbers
        max(fewer, key=lambda m: weights[id(m)]).slots -= 1
    return [f"{m.name}: context {m.context} × {m.slots} slots, prompt cache {m.prompt_cache_mib} MiB (chosen from the "
            f"memory plan; set context/slots/prompt_cache_mib to fix them)"
            for m in {id(m): m for m in ctx_open + slots_open}.values()]


def room_for(settings: Settings, model: str, replicas: int, running: dict[str, int],
             info: dict | None = None) -> str | None:
    """None when ``replicas`` of ``model`` fit the memory plan with the others as they run now
    (``running``: model → replicas); else why not, with the numbers (the autoscaler's guard).

    Against ``supervisor.memory_budget_gb`` when set: everything planned must fit it. Else the
    replicas added must fit the memory available now (the running ones are already using theirs)."""
    target = next((m for m in settings.models if m.name == model), None)
    if target is None or not _is_started_here(target):
        return None  # only llama.cpp models are planned; others are bounded by max_replicas alone
    info = info if info is not None else detect()
    hw = parse_hardware("auto", info)
    per = _plan(target, hw).total_bytes
    budget_gb = settings.supervisor.memory_budget_gb
    if budget_gb is not None:
        planned = admit(settings.model_copy(update={"models": [
            m.model_copy(update={"replicas": replicas if m.name == model else running.get(m.name, m.replicas)})
            for m in settings.models]}), info)
        if planned is not None and not planned.fits:
            return (f"{replicas} replicas of {model} would need {planned.need_bytes / GIB:.2f} GiB in all, more than "
                    f"supervisor.memory_budget_gb ({budget_gb:g} GB)")
        return None
    extra = per * max(replicas - running.get(model, 0), 0)
    if extra > info["available_bytes"]:
        return (f"one more replica of {model} needs {per / GIB:.2f} GiB; {info['available_bytes'] / GIB:.2f} GiB is "
                "available now")
    return None
