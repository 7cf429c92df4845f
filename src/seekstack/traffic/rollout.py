"""Canary and blue-green rollouts of a model to another version from the model store.

**Canary** (``start``): the new version starts as a second deployment of the model, taking
``percent`` of its traffic once ready, sticky per caller (the session, else OpenAI's ``user``
field, else the key: ``Router.ask``). Every second its outcomes since the start are compared
with the baseline's over the same time (:class:`Guards`): an error rate above the baseline's by
more than ``max_error_rate``, or a p99 time to first token above ``max_ttft_ratio`` × the
baseline's, rolls it back at once — the canary leaves the registry and drains, the baseline
takes everything again. When ``duration`` has passed unbroken it is promoted: it becomes the
model's deployment, and the old one drains. ``promote`` and ``abort`` do either by hand.

**Blue-green** (``switch``): the new version (green) starts beside the old (blue) with the same
replicas and no traffic; once every green replica is ready and has answered a warm-up request,
one step makes green the model's deployment, and blue drains: nothing in flight is dropped.

Versions come from the store (``NAME@VERSION``, verified as at every load). Every step is an
audit record (``event: rollout``), a log line and a metric. A promotion lasts until the gateway
restarts; to keep it, point the config (or the store's current version) at the new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..errors import ConflictError, InvalidRequestError, ModelNotFoundError, NotFoundError
from .outcomes import p99

if TYPE_CHECKING:
    from ..config import ModelConfig, Settings
    from ..registry import Deployment, Registry
    from ..supervisor import Supervisor
    from .router import Router

log = logging.getLogger("seekstack.rollout")

CANARY, BLUE_GREEN = "canary", "blue-green"
STARTING, RUNNING, PROMOTED, ROLLED_BACK, ABORTED, FAILED = (
    "starting", "running", "promoted", "rolled-back", "aborted", "failed")
SHARES = 10_000  # deployment weights during a rollout are in basis points of the model's traffic


@dataclass(frozen=True)
class Guards:
    max_error_rate: float = 0.01   # the canary's error rate may exceed the baseline's by this much
    max_ttft_ratio: float = 1.5    # the canary's p99 time to first token, at most this × the baseline's
    min_requests: int = 20         # the canary's requests before it is judged


@dataclass(eq=False)
class Rollout:
    model: str
    mode: str
    to: str                        # NAME@VERSION
    from_version: str | None
    deployment: str                # the new deployment's name
    percent: float = 0.0
    duration: float = 0.0
    guards: Guards = Guards()
    state: str = STARTING
    reason: str = ""
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    _since: float = field(default_factory=time.monotonic)
    canary: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "mode": self.mode, "to": self.to, "from": self.from_version,
                "deployment": self.deployment, "percent": self.percent, "duration_s": self.duration,
                "guards": self.guards.__dict__, "state": self.state, "reason": self.reason,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "elapsed_s": round((self.ended_at or time.time()) - self.started_at, 1),
                "canary": self.canary, "baseline": self.baseline}


class Rollouts:
    def __init__(self, settings: "Settings", supervisor: "Supervisor", registry: "Registry", router: "Router",
                 audit: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                 resolve: Callable[["Settings", "ModelConfig"], str] | None = None):
        self.settings = settings
        self.supervisor = supervisor
        self.registry = registry
        self.router = router
        self.audit = audit
        self.resolve = resolve
        self.active: dict[str, Rollout] = {}
        self.history: list[Rollout] = []
        self.outcomes: dict[tuple[str, str], int] = {}  # (model, how it ended) → count, for the metric
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------ starting

    async def start(self, model: str, to: str, mode: str = CANARY, percent: float = 1.0,
                    duration: float = 1800.0, guards: Guards = Guards()) -> Rollout:
        if model in self.active:
            raise ConflictError(f"model {model!r} already has a {self.active[model].mode} rollout to "
                                f"{self.active[model].to} in progress", fix="promote or abort it first")
        base = self._own(model)
        if base.model.store is None:
            raise InvalidRequestError(f"model {model!r} is not served from the store, so it has no versions to roll out",
                                      fix="serve it with `store: NAME` (seekstack import / pull), then roll out NAME@VERSION")
        if not 0 < percent < 100 and mode == CANARY:
            raise InvalidRequestError(f"canary share {percent:g}% is not between 0 and 100", param="canary_percent")
        name = base.model.store.partition("@")[0]
        ref = to if "@" in to else f"{name}@{to}"
        if ref.partition("@")[0] != name:
            raise InvalidRequestError(f"{ref} is not a version of {name}, the store model {model!r} serves",
                                      fix=f"roll out {name}@VERSION (`seekstack models history {name}`)")
        new = base.model.model_copy(update={"store": ref})
        if self.resolve is not None:
            await asyncio.to_thread(self.resolve, self.settings, new)  # verified, as at every load; 400 if not
        version = ref.partition("@")[2]
        rollout = Rollout(model, mode, ref, base.version or base.model.store, f"{model}@{version}",
                          percent if mode == CANARY else 0.0, duration if mode == CANARY else 0.0, guards)
        if rollout.deployment in self.supervisor.replicas:
            raise ConflictError(f"{rollout.deployment} is already being served", fix="roll out another version")
        share = round(percent * SHARES / 100) if mode == CANARY else 0
        self.supervisor.add_deployment(rollout.deployment, new, share)
        self.supervisor.set_weight(model, SHARES - share)
        self.active[model] = rollout
        await self._record(rollout, "started")
        if mode == CANARY:
            rollout.state = RUNNING
        else:
            self._spawn(self._switch(rollout))
        return rollout

    def _own(self, model: str) -> "Deployment":
        found = [d for d in self.registry.deployments(model) if d.name == model]
        if not found:
            raise ModelNotFoundError(f"model {model!r} is not served here", param="model")
        if found[0].source != "local":
            raise InvalidRequestError(f"model {model!r} runs on engines seekstack does not start; roll it out where they run")
        return found[0]

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _switch(self, rollout: Rollout) -> None:
        """Blue-green: wait for every green replica, warm each, then switch in one step."""
        green = self.supervisor.replicas[rollout.deployment]
        deadline = time.monotonic() + self.supervisor.cfg.startup_timeout
        while not all(r.routable for r in green):
            if time.monotonic() > deadline or rollout.state != STARTING:
                if rollout.state == STARTING:
                    await self._end(rollout, FAILED, "the new version's replicas did not all become ready")
                return
            await asyncio.sleep(0.1)
        try:
            for replica in green:
                await replica.backend.send("completion", {"model": rollout.model, "prompt": "Hello", "max_tokens": 1})
        except Exception as exc:  # noqa: BLE001 — a warm-up that fails means green is not fit to switch to
            await self._end(rollout, FAILED, f"a warm-up request to the new version failed: {exc}")
            return
        await self._end(rollout, PROMOTED, "switched: every green replica ready and warm")

    # ------------------------------------------------------------ judging

    def check(self) -> list[tuple[Rollout, str, str]]:
        """Compare every running canary with its baseline; what should happen to which, and why."""
        out = []
        for rollout in list(self.active.values()):
            if rollout.state != RUNNING:
                continue
            canary = self.router.outcomes.get(rollout.deployment)
            base = self.router.outcomes.get(rollout.model)
            c_req, c_fail, c_ttft = canary.since(rollout._since) if canary else (0, 0, [])
            b_req, b_fail, b_ttft = base.since(rollout._since) if base else (0, 0, [])
            rollout.canary = {"requests": c_req, "errors": c_fail, "p99_ttft_s": p99(c_ttft)}
            rollout.baseline = {"requests": b_req, "errors": b_fail, "p99_ttft_s": p99(b_ttft)}
            g = rollout.guards
            if c_req >= g.min_requests:
                c_rate, b_rate = c_fail / c_req, (b_fail / b_req if b_req else 0.0)
                if c_rate > b_rate + g.max_error_rate:
                    out.append((rollout, ROLLED_BACK, f"error rate {c_rate:.1%} against the baseline's {b_rate:.1%} "
                                                      f"(allowed: {g.max_error_rate:.1%} more)"))
                    continue
                c99, b99 = p99(c_ttft), p99(b_ttft)
                if c99 is not None and b99 and len(c_ttft) >= g.min_requests and c99 > g.max_ttft_ratio * b99:
                    out.append((rollout, ROLLED_BACK, f"p99 time to first token {c99 * 1000:.0f} ms against the "
                                                      f"baseline's {b99 * 1000:.0f} ms (allowed: {g.max_ttft_ratio:g}×)"))
                    continue
            if time.monotonic() - rollout._since >= rollout.duration:
                out.append((rollout, PROMOTED, f"{rollout.duration:g} s without breaking a guard"))
        return out

    async def run(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            for rollout, state, reason in self.check():
                try:
                    await self._end(rollout, state, reason)
                except Exception:  # noqa: BLE001 — one rollout's failure must not stop the others' guards
                    log.exception("rollout of %s: %s failed", rollout.model, state)

    # ------------------------------------------------------------ ending

    async def promote(self, model: str) -> Rollout:
        return await self._end(self._active(model), PROMOTED, "promoted by hand")

    async def abort(self, model: str) -> Rollout:
        return await self._end(self._active(model), ABORTED, "aborted by hand")

    def _active(self, model: str) -> Rollout:
        if model not in self.active:
            raise NotFoundError(f"model {model!r} has no rollout in progress")
        return self.active[model]

    async def _end(self, rollout: Rollout, state: str, reason: str) -> Rollout:
        if self.active.get(rollout.model) is not rollout:
            return rollout
        del self.active[rollout.model]
        if state == PROMOTED:
            self.supervisor.promote(rollout.deployment)
        else:
            self.supervisor.retire(rollout.deployment)
            self.supervisor.set_weight(rollout.model, 100)
        rollout.state, rollout.reason, rollout.ended_at = state, reason, time.time()
        self.history = [*self.history[-49:], rollout]
        key = (rollout.model, state)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        await self._record(rollout, state)
        return rollout

    async def _record(self, rollout: Rollout, step: str) -> None:
        log.warning("rollout of %s to %s (%s): %s%s", rollout.model, rollout.to, rollout.mode, step,
                    f" — {rollout.reason}" if rollout.reason else "")
        if self.audit is not None:
            await self.audit({"event": "rollout", "decision": "deny" if step in (ROLLED_BACK, FAILED) else "allow",
                              "model": rollout.model, "mode": rollout.mode, "to": rollout.to,
                              "from": rollout.from_version, "step": step, "percent": rollout.percent,
                              "reason": rollout.reason, "canary": rollout.canary, "baseline": rollout.baseline})

    def describe(self) -> list[dict[str, Any]]:
        return [r.describe() for r in [*self.active.values(), *reversed(self.history)]]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
