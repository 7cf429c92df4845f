"""Choose an endpoint for each request, from the registry of deployments.

``acquire`` picks one of the model's deployments by weight, then one of its routable endpoints
with room (fewer than ``queue.concurrency`` requests in flight) by the routing policy
(:mod:`.policies`); when none has room, the request waits in the deployment's bounded queue
(:mod:`.queue`). ``release`` gives the slot back and hands it to the first waiter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from ..errors import EngineUnavailableError
from ..registry import MODEL_UNLOADED, Deployment, Registry
from .policies import POLICIES, Policy
from .outcomes import Outcomes
from .queue import PRIORITIES, WaitQueue

if TYPE_CHECKING:
    from ..config import SchedulerConfig
    from ..supervisor import Replica


@dataclass(frozen=True)
class Ask:
    """What routing needs to know of one request."""

    key: bytes | None = None   # affinity: the session, else the start of the prompt
    priority: int = 0          # PRIORITIES: 0 interactive, 1 batch
    stick: bytes | None = None # who it is for (session, end user, else key): one deployment per caller


def affinity_key(body: dict[str, Any], session: str | None, prefix_bytes: int) -> bytes:
    """A session id when the client names one, else the first ``prefix_bytes`` of the prompt as
    the engine will see it (the messages in order: a shared system prompt is a shared prefix)."""
    if session:
        return b"session:" + session.encode()
    if "messages" in body:
        parts: list[bytes] = []
        size = 0
        for message in body["messages"]:
            content = message.get("content")
            text = content if isinstance(content, str) else repr(content)
            part = f"{message.get('role')}\0{text}\0".encode()
            parts.append(part)
            size += len(part)
            if size >= prefix_bytes:
                break
        return b"".join(parts)[:prefix_bytes]
    prompt = body.get("prompt")
    return (prompt if isinstance(prompt, str) else repr(prompt)).encode()[:prefix_bytes]


class Router:
    def __init__(self, registry: Registry, settings: "SchedulerConfig"):
        self.registry = registry
        self.settings = settings
        self.policy: Policy = POLICIES[settings.policy]()
        self.queues: dict[str, WaitQueue] = {}
        self.resumed: dict[str, int] = {}  # streams resumed on another endpoint, per model
        self.fallbacks: dict[tuple[str, str, str], int] = {}  # (model asked for, model that answered, reason)
        self.outcomes: dict[str, Outcomes] = {}  # per deployment: a rollout's guards read them
        # alias → what loads it: models unloaded for being idle (traffic/keep_alive.py)
        self.sleeping: dict[str, Callable[[], Awaitable[None]]] = {}

    def outcome(self, endpoint: "Replica", ok: bool, ttft: float | None = None) -> None:
        """One request's result on an endpoint: whether it answered, and its time to first token."""
        found = self.outcomes.get(endpoint.deployment)
        if found is None:
            found = self.outcomes[endpoint.deployment] = Outcomes()
        found.add(ok, ttft)

    def fell_back(self, model: str, to: str, reason: str) -> None:
        """A request for ``model`` was answered by its fallback ``to`` (traffic/fallbacks.py)."""
        key = (model, to, reason)
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def ask(self, body: dict[str, Any], key_id: str, team: str, session: str | None = None) -> Ask:
        """The routing side of a request: its affinity key (when the policy uses one), priority, and
        who it is for (the session, else OpenAI's ``user`` field, else the key), so that a canary
        keeps its users."""
        priorities = self.settings.priorities
        klass = priorities.keys.get(key_id) or priorities.teams.get(team) or priorities.default
        key = affinity_key(body, session, self.settings.prefix_bytes) if self.policy.name == "prefix-affinity" else None
        user = body.get("user")
        stick = f"s:{session}" if session else f"u:{user}" if isinstance(user, str) and user else f"k:{key_id}"
        return Ask(key, PRIORITIES[klass], stick.encode())

    # ------------------------------------------------------------ choose

    def _deployment(self, alias: str, exclude: Iterable["Replica"],
                    stick: bytes | None = None) -> tuple[Deployment, list["Replica"]]:
        deployment = self.registry.choose(alias, exclude, stick)
        if deployment is None:
            raise self._unavailable(alias)
        return deployment, [e for e in deployment.routable() if e not in exclude]

    def _unavailable(self, alias: str) -> EngineUnavailableError:
        if self.registry.state(alias) == MODEL_UNLOADED:
            return EngineUnavailableError(f"model {alias!r} is unloaded", retry_after=30,
                                          fix=f"an operator loads it with `seekstack models load {alias}`")
        return EngineUnavailableError(f"no healthy replica of model {alias!r} is available right now",
                                      fix="retry after the Retry-After delay; check `seekstack ps` and the engine logs",
                                      retry_after=2)

    def unroutable(self, alias: str) -> EngineUnavailableError | None:
        """The error a request for ``alias`` gets now, without waiting or loading: None while one
        of its deployments takes traffic, or while it is asleep (a request loads it)."""
        if alias in self.sleeping or any(d.weight > 0 and d.routable() for d in self.registry.deployments(alias)):
            return None
        return self._unavailable(alias)

    def queue(self, deployment: Deployment) -> WaitQueue:
        queue = self.queues.get(deployment.name)
        if queue is None:
            settings = deployment.model.queue
            queue = self.queues[deployment.name] = WaitQueue(deployment.alias, settings.max_waiting, settings.max_wait)
        return queue

    async def wake(self, alias: str) -> None:
        """Load the model first if it was unloaded for being idle (every request waits for one load)."""
        waking = self.sleeping.get(alias)
        if waking is not None:
            await waking()

    def peek(self, alias: str) -> "Replica":
        """A routable endpoint for a side call that takes no slot (counting a prompt's tokens)."""
        _, endpoints = self._deployment(alias, ())
        return min(endpoints, key=lambda e: e.outstanding)

    async def acquire(self, alias: str, ask: Ask = Ask(), exclude: Iterable["Replica"] = ()) -> "Replica":
        """An endpoint for one request, its slot taken (``release`` it). Waits in the queue when
        every endpoint is full; raises 503 when none is routable, 429 when the queue is."""
        exclude = frozenset(exclude)
        place: int | None = None
        if alias in self.sleeping:
            await self.wake(alias)
        while True:
            deployment, endpoints = self._deployment(alias, exclude, ask.stick)
            queue = self.queue(deployment)
            limit = deployment.concurrency
            room = endpoints if limit is None else [e for e in endpoints if e.outstanding < limit]
            if room and (place is not None or not queue.must_wait()):
                endpoint = self.policy.choose(room, ask.key)
                endpoint.outstanding += 1
                return endpoint
            place = await queue.wait(ask.priority, place)

    def has_spare(self, endpoint: "Replica") -> bool:
        """Whether another endpoint of its deployment takes traffic (ejecting it leaves one)."""
        return any(e is not endpoint and e.routable for d in self.registry.deployments(endpoint.model.name)
                   if d.name == endpoint.deployment for e in d.endpoints)

    def release(self, endpoint: "Replica") -> None:
        endpoint.outstanding -= 1
        queue = self.queues.get(endpoint.deployment)
        if queue is not None and queue.waiting:
            queue.wake()

    def waiting(self) -> dict[str, int]:
        return {name: queue.waiting for name, queue in self.queues.items()}
