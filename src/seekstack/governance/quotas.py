"""Quotas and rate limits per key, user and team, exact across gateway processes.

Limits (any may be unset): ``rpm`` requests per minute, ``tpm`` tokens per minute,
``concurrent`` requests in flight, ``daily_tokens`` and ``monthly_tokens`` budgets (UTC
days and months). Tokens are prompt + completion, reasoning included.

Admission is one atomic step over every applicable counter (all pass or none is taken):
- request and concurrency counters are checked *and* incremented together, so they are
  exact under any concurrency, across processes sharing Redis;
- token counters are checked (used < limit) at admission and charged with the real count
  when the request ends, so one request that starts under a token limit may end over it —
  the next one is refused.

Windows are fixed (the current UTC minute / day / month); a refusal says when its window
resets. :class:`MemoryCounters` serves one gateway; :class:`RedisCounters` several (one Lua
script per admission).
"""

from __future__ import annotations

import abc
import calendar
import functools
import math
import time
from dataclasses import dataclass, field

from ..errors import RateLimitError

WINDOWS = {"rpm": 60, "tpm": 60}


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    concurrent: int | None = None
    daily_tokens: int | None = None
    monthly_tokens: int | None = None

    def any(self) -> bool:
        return any(v is not None for v in self.__dict__.values())


@dataclass(frozen=True)
class Check:
    """One counter: ``kind`` is request|concurrent|tokens; ``count`` says whether admission increments it."""

    key: str
    limit: int
    ttl: int              # seconds the counter lives (its window); 0 = no expiry (concurrency)
    reset_at: float       # when the window turns over
    kind: str
    label: str            # e.g. "team radiology: requests per minute"

    @property
    def counts(self) -> bool:
        return self.kind in ("request", "concurrent")


@dataclass
class Admission:
    """What a request holds: release concurrency and charge tokens when it ends."""

    concurrency_keys: list[str] = field(default_factory=list)
    token_checks: list[Check] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


@functools.lru_cache(maxsize=4)
def _calendar(minute: int) -> tuple[str, str, float, float]:
    """Day and month names and their ends, for the UTC minute ``minute`` (cached: once a minute)."""
    tm = time.gmtime(minute * 60)
    next_month = calendar.timegm((tm.tm_year + (tm.tm_mon == 12), tm.tm_mon % 12 + 1, 1, 0, 0, 0))
    return (time.strftime("%Y-%m-%d", tm), time.strftime("%Y-%m", tm), (minute * 60 // 86400 + 1) * 86400, next_month)


def plan_checks(subjects: list[tuple[str, str, Limits]], now: float) -> list[Check]:
    """Counters for each (scope, name, limits), e.g. ("team", "radiology", Limits(rpm=60))."""
    minute = int(now // 60)
    day, month, next_day, next_month = _calendar(minute)
    checks = []
    for scope, name, limits in subjects:
        base = f"q:{scope}:{name}"
        who = f"{scope} {name}"
        if limits.rpm is not None:
            checks.append(Check(f"{base}:rq:{minute}", limits.rpm, 120, (minute + 1) * 60, "request", f"{who}: requests per minute"))
        if limits.concurrent is not None:
            checks.append(Check(f"{base}:cc", limits.concurrent, 0, now + 1, "concurrent", f"{who}: concurrent requests"))
        if limits.tpm is not None:
            checks.append(Check(f"{base}:tk:{minute}", limits.tpm, 120, (minute + 1) * 60, "tokens", f"{who}: tokens per minute"))
        if limits.daily_tokens is not None:
            checks.append(Check(f"{base}:td:{day}", limits.daily_tokens, 2 * 86400, next_day, "tokens", f"{who}: tokens per day"))
        if limits.monthly_tokens is not None:
            checks.append(Check(f"{base}:tm:{month}", limits.monthly_tokens, 32 * 86400, next_month, "tokens",
                                f"{who}: tokens per month"))
    return checks


class Counters(abc.ABC):
    @abc.abstractmethod
    async def admit(self, checks: list[Check]) -> tuple[int, list[int]]:
        """Atomically: if every check passes, increment the counting ones. Return (index of the
        first failing check or -1, current value of each counter after the step)."""

    @abc.abstractmethod
    async def release(self, keys: list[str]) -> None: ...

    @abc.abstractmethod
    async def charge(self, checks: list[Check], tokens: int) -> None: ...

    async def close(self) -> None:
        pass


class MemoryCounters(Counters):
    """One process: the event loop makes each method atomic."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.expiry: dict[str, float] = {}

    def _get(self, key: str, now: float) -> int:
        if key in self.expiry and self.expiry[key] <= now:
            self.values.pop(key, None)
            self.expiry.pop(key, None)
        return self.values.get(key, 0)

    async def admit(self, checks: list[Check]) -> tuple[int, list[int]]:
        now = time.time()
        values = [self._get(c.key, now) for c in checks]
        for i, (check, value) in enumerate(zip(checks, values)):
            if value >= check.limit:
                return i, values
        for i, check in enumerate(checks):
            if check.counts:
                values[i] = self.values[check.key] = values[i] + 1
                if check.ttl:
                    self.expiry.setdefault(check.key, now + check.ttl)
        return -1, values

    async def release(self, keys: list[str]) -> None:
        for key in keys:
            self.values[key] = max(self.values.get(key, 0) - 1, 0)

    async def charge(self, checks: list[Check], tokens: int) -> None:
        now = time.time()
        for check in checks:
            self.values[check.key] = self._get(check.key, now) + tokens
            self.expiry.setdefault(check.key, now + check.ttl)


ADMIT_LUA = """
local n = #KEYS
local values = {}
for i = 1, n do
  values[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if values[i] >= tonumber(ARGV[3*i-2]) then
    return {i - 1, values}
  end
end
for i = 1, n do
  if ARGV[3*i] == '1' then
    values[i] = redis.call('INCR', KEYS[i])
    local ttl = tonumber(ARGV[3*i-1])
    if ttl > 0 and redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
return {-1, values}
"""


class RedisCounters(Counters):
    """Several gateways: counters in Redis, each admission one Lua script (atomic on the server)."""

    def __init__(self, url: str):
        import redis.asyncio as redis

        self.redis = redis.Redis.from_url(url) if "://" in url else redis.Redis(unix_socket_path=url)
        self._admit = self.redis.register_script(ADMIT_LUA)

    async def admit(self, checks: list[Check]) -> tuple[int, list[int]]:
        args: list = []
        for c in checks:
            args += [c.limit, c.ttl, "1" if c.counts else "0"]
        failed, values = await self._admit(keys=[c.key for c in checks], args=args)
        return int(failed), [int(v) for v in values]

    async def release(self, keys: list[str]) -> None:
        if keys:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.decr(key)
                await pipe.execute()

    async def charge(self, checks: list[Check], tokens: int) -> None:
        if checks and tokens:
            async with self.redis.pipeline(transaction=True) as pipe:
                for c in checks:
                    pipe.incrby(c.key, tokens)
                    pipe.expire(c.key, c.ttl, nx=True)
                await pipe.execute()

    async def close(self) -> None:
        await self.redis.aclose()


class Quotas:
    def __init__(self, counters: Counters, limits_for):
        self.counters = counters
        self.limits_for = limits_for  # (scope, name) -> Limits | None

    async def admit(self, key_id: str, user: str, team: str) -> Admission:
        subjects = [(scope, name, limits) for scope, name in (("key", key_id), ("user", user), ("team", team))
                    if (limits := self.limits_for(scope, name)) is not None and limits.any()]
        if not subjects:
            return Admission()
        now = time.time()
        checks = plan_checks(subjects, now)
        failed, values = await self.counters.admit(checks)
        if failed >= 0:
            check = checks[failed]
            retry = max(1, math.ceil(check.reset_at - now))
            raise RateLimitError(f"rate limit reached: {check.label} is {check.limit}",
                                 fix=f"retry after {retry} s, or ask for a higher limit",
                                 retry_after=retry, limit_headers=_headers(checks, values, now),
                                 scope=check.key.split(":")[1], limit=check.label.rpartition(": ")[2].replace(" ", "_"))
        return Admission([c.key for c in checks if c.kind == "concurrent"],
                         [c for c in checks if c.kind == "tokens"], _headers(checks, values, now))

    async def settle(self, admission: Admission, tokens: int) -> None:
        await self.counters.release(admission.concurrency_keys)
        await self.counters.charge(admission.token_checks, tokens)


def _headers(checks: list[Check], values: list[int], now: float) -> dict[str, str]:
    """OpenAI-style x-ratelimit-* headers from the tightest request and token counters."""
    headers = {}
    for kind, suffix in (("request", "requests"), ("tokens", "tokens")):
        relevant = [(c, v) for c, v in zip(checks, values) if c.kind == kind]
        if relevant:
            check, value = min(relevant, key=lambda cv: cv[0].limit - cv[1])
            headers[f"x-ratelimit-limit-{suffix}"] = str(check.limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(max(check.limit - value, 0))
            headers[f"x-ratelimit-reset-{suffix}"] = f"{max(check.reset_at - now, 0):.0f}s"
    return headers
