"""The autoscaler: per deployment, between ``autoscale.min_replicas`` and ``max_replicas``.

Utilisation is **saturation**, not GPU busy (which sits near 100 % under batching): the share
of the deployment's slots taken by requests in flight and waiting in its queue, or its engines'
KV-cache use, whichever is higher. It is sampled every ``sample_every`` seconds and averaged
over ``window`` seconds (5 minutes by default). The rule, as data (:class:`Rule`):

- average above ``scale_up_at`` (0.85) → one more replica, once ``up_cooldown`` has passed since
  the last change, while none is still starting, and only if the memory plan says it fits;
- average below ``scale_down_at`` (0.30) over a full window → one fewer, once ``down_cooldown``
  has passed; the replica leaves the registry at once and drains before it stops.

Every decision — and every scale-up the memory plan refused — is an audit record, a metric and
a log line. The actuator is the supervisor here; on Kubernetes the same rule is rendered as a
KEDA ScaledObject on the gateways' metrics (:func:`seekstack.kubernetes_metrics.scaled_object`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from ..errors import InvalidRequestError, ModelNotFoundError

if TYPE_CHECKING:
    from ..config import AutoscaleConfig
    from ..registry import Deployment, Registry
    from .router import Router

log = logging.getLogger("seekstack.autoscaler")


@dataclass(frozen=True)
class Rule:
    min_replicas: int
    max_replicas: int
    scale_up_at: float
    scale_down_at: float
    window: float
    up_cooldown: float
    down_cooldown: float
    sample_every: float
    metric: str = "saturation"  # max(slots in use incl. the queue, KV-cache use), 0–1+

    @classmethod
    def of(cls, config: "AutoscaleConfig") -> "Rule":
        return cls(**config.model_dump())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    model: str
    direction: str            # up | down | held (the memory plan refused a scale-up)
    replicas_from: int
    replicas_to: int
    utilization: float
    reason: str
    at: float = field(default_factory=time.time)

    def record(self) -> dict[str, Any]:
        """The audit record of the decision."""
        return {"event": "autoscale", "decision": "allow" if self.direction != "held" else "deny",
                "model": self.model, "direction": self.direction, "replicas_from": self.replicas_from,
                "replicas_to": self.replicas_to, "utilization": round(self.utilization, 3), "reason": self.reason}


class Actuator(Protocol):
    async def scale(self, model: str, replicas: int) -> None: ...


def utilization(deployment: "Deployment", waiting: int) -> float:
    """Saturation of a deployment now: slots in use (with its queue) or KV-cache use, the higher."""
    ready = deployment.routable()
    slots = (deployment.concurrency or deployment.model.slots) * len(ready)
    if not slots:
        return 1.0 if waiting or any(e.outstanding for e in deployment.endpoints) else 0.0
    in_use = (sum(e.outstanding for e in ready) + waiting) / slots
    kv = [e.load.kv_use for e in ready if e.load.kv_use is not None]
    return max(in_use, max(kv) if kv else 0.0)


class _State:
    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, float]] = collections.deque()
        self.last_change = float("-inf")
        self.last_held: float = float("-inf")
        self.sampled_at = 0.0
        self.average: float | None = None
        self.decisions: dict[str, int] = {"up": 0, "down": 0, "held": 0}
        self.last: Decision | None = None


class Autoscaler:
    def __init__(self, registry: "Registry", router: "Router", actuator: Actuator,
                 rules: Callable[[], dict[str, Rule]], fits: Callable[[str, int], str | None] = lambda m, n: None,
                 audit: Callable[[dict[str, Any]], Awaitable[None]] | None = None):
        self.registry = registry
        self.router = router
        self.actuator = actuator
        self.rules = rules            # model → rule, read at every step (a reload may change them)
        self.fits = fits              # None when `n` replicas of the model fit the memory plan, else why not
        self.audit = audit
        self.state: dict[str, _State] = {}
        self.bounds: dict[str, tuple[int, int]] = {}  # (min, max) set at run time over the config's

    def rule(self, model: str) -> Rule | None:
        """The model's rule, with bounds set at run time in place of the config's."""
        rule = self.rules().get(model)
        if rule is not None and model in self.bounds:
            low, high = self.bounds[model]
            rule = replace(rule, min_replicas=low, max_replicas=high)
        return rule

    def set_bounds(self, model: str, low: int | None, high: int | None) -> Rule:
        """New replica bounds for an autoscaled model, until the gateway restarts."""
        rule = self.rule(model)
        if rule is None and self.registry.model(model) is None:
            raise ModelNotFoundError(f"model {model!r} is not served here", param="model")
        if rule is None:
            raise InvalidRequestError(f"model {model!r} has no autoscale rule",
                                      fix="add `autoscale:` to its entry in seekstack.yaml and reload")
        low = rule.min_replicas if low is None else low
        high = rule.max_replicas if high is None else high
        if not 1 <= low <= high <= 64:
            raise InvalidRequestError(f"replica bounds {low}..{high} are not 1 <= min <= max <= 64",
                                      fix="send min_replicas <= max_replicas, both between 1 and 64")
        self.bounds[model] = (low, high)
        return self.rule(model)

    def _deployment(self, model: str) -> "Deployment | None":
        found = [d for d in self.registry.deployments(model) if d.source == "local"]
        return found[0] if found else None

    def step(self, now: float | None = None) -> list[Decision]:
        """Sample every autoscaled deployment and decide; the caller applies the decisions."""
        now = time.monotonic() if now is None else now
        out = []
        for model in self.rules():
            rule, deployment = self.rule(model), self._deployment(model)
            if deployment is None or rule is None:
                continue
            state = self.state.setdefault(model, _State())
            queue = self.router.queues.get(deployment.name)
            state.sampled_at = now
            state.samples.append((now, utilization(deployment, queue.waiting if queue else 0)))
            while state.samples and state.samples[0][0] < now - rule.window:
                state.samples.popleft()
            covered = now - state.samples[0][0] >= rule.window - rule.sample_every
            state.average = sum(v for _, v in state.samples) / len(state.samples)
            decision = self._decide(model, rule, deployment, state, now, covered)
            if decision is not None:
                state.decisions[decision.direction] += 1
                state.last = decision
                out.append(decision)
        return out

    def _decide(self, model: str, rule: Rule, deployment: "Deployment", state: _State, now: float,
                covered: bool) -> Decision | None:
        replicas, average = len(deployment.endpoints), state.average or 0.0
        starting = any(e.state in ("starting", "restarting") for e in deployment.endpoints)
        if replicas < rule.min_replicas:
            return self._change(model, state, now, replicas, rule.min_replicas, average, "below min_replicas")
        if replicas > rule.max_replicas:
            return self._change(model, state, now, replicas, rule.max_replicas, average, "above max_replicas")
        # a scale-up the memory plan refused (`apply`) is not asked for again within a window
        if covered and average > rule.scale_up_at and replicas < rule.max_replicas and not starting \
                and now - state.last_change >= rule.up_cooldown and now - state.last_held >= rule.window:
            return self._change(model, state, now, replicas, replicas + 1,
                                average, f"utilisation {average:.0%} > {rule.scale_up_at:.0%} over {rule.window:g} s")
        if covered and average < rule.scale_down_at and replicas > rule.min_replicas \
                and now - state.last_change >= rule.down_cooldown:
            return self._change(model, state, now, replicas, replicas - 1,
                                average, f"utilisation {average:.0%} < {rule.scale_down_at:.0%} over {rule.window:g} s")
        return None

    @staticmethod
    def _change(model: str, state: _State, now: float, old: int, new: int, average: float, reason: str) -> Decision:
        state.last_change = now
        return Decision(model, "up" if new > old else "down", old, new, average, reason)

    async def apply(self, decision: Decision) -> None:
        """Check a scale-up against the memory plan (in a thread: it reads the machine), then act,
        log and audit. A refused one is ``held``, said once a window."""
        if decision.direction == "up":
            refused = await asyncio.to_thread(self.fits, decision.model, decision.replicas_to)
            if refused is not None:
                state = self.state[decision.model]
                state.last_held, state.last_change = state.sampled_at, float("-inf")
                state.decisions["up"] -= 1
                state.decisions["held"] += 1
                decision.direction, decision.replicas_to, decision.reason = "held", decision.replicas_from, refused
        if decision.direction != "held":
            await self.actuator.scale(decision.model, decision.replicas_to)
        log.warning("autoscale %s: %s %d -> %d (%s)", decision.model, decision.direction, decision.replicas_from,
                    decision.replicas_to, decision.reason)
        if self.audit is not None:
            await self.audit(decision.record())

    async def run(self) -> None:
        while True:
            rules = self.rules()
            await asyncio.sleep(min((r.sample_every for r in rules.values()), default=5.0))
            for decision in self.step():
                try:
                    await self.apply(decision)
                except Exception:  # noqa: BLE001 — one failed decision must not stop the autoscaler
                    log.exception("autoscale %s: applying %s failed", decision.model, decision.direction)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for model in self.rules():
            rule, deployment = self.rule(model), self._deployment(model)
            state = self.state.get(model, _State())
            out.append({"model": model, "rule": rule.to_json(),
                        "replicas": len(deployment.endpoints) if deployment else 0,
                        "utilization": None if state.average is None else round(state.average, 3),
                        "decisions": dict(state.decisions),
                        "last_decision": asdict(state.last) if state.last else None})
        return out
