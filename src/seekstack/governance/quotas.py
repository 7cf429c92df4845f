"""Quotas and rate limits per key, user and team, exact across gateway processes.

Limits (any may be unset): ``rpm`` requests per minute, ``tpm`` tokens per minute,
``concurrent`` requests in flight, ``daily_tokens`` and ``monthly_tokens`` budgets (UTC
days and months). Tokens are prompt + completion, reasoning included.

Admission is one atomic step over every applicable counter (all pass or none is taken):
request and concurrency counters are checked *and* incremented together, so they are exact
under any concurrency, across processes sharing Redis.

Token limits cannot be overshot, however many requests run at once: once the request is
read, :meth:`Quotas.reserve` atomically reserves its most — the prompt plus ``max_tokens``,
or, without one, what is left of the tightest budget (which then becomes the engine's
``max_tokens``) — and :meth:`Quotas.settle` corrects the reservation to what was used.

Per-minute windows slide: a minute is six 10-second buckets plus the current one, so any
60 seconds hold at most the limit (there is no minute edge to burst across; a refusal may
come up to 10 s early). Daily and monthly budgets are calendar windows (UTC). A refusal says
when to retry. :class:`MemoryCounters` serves one gateway; :class:`RedisCounters` several
(one Lua script per step). The console's failed password sign-ins per user name are counted
on the same counters (:func:`failed_sign_ins`).

In Redis a request's concurrency slot is a **lease** (a member of a sorted set, scored by
when it lapses): the gateway renews its leases while their requests run, and a lease that
is not renewed lapses after ``lease_seconds``. So a gateway that dies, or a release that
cannot reach Redis, holds slots for at most that long, never for good. While Redis cannot
be reached, a request that a limit applies to is refused with 503 (``storage_unavailable``)
— fail-closed, like the audit log — and the counters are used again as soon as it answers.
"""

from __future__ import annotations

import abc
import asyncio
import calendar
import functools
import itertools
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import RateLimitError, StorageUnavailableError, first_line

log = logging.getLogger("seekstack.governance")

BUCKET = 10              # seconds per bucket of a sliding minute
MINUTE_BUCKETS = 7       # the current bucket and the six before it: at least the last 60 s
REDIS_TIMEOUT_S = 2.0    # a Redis that does not answer in this long (tried twice) is unavailable: 503


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
    """One limit over its window: the counter is the sum of ``keys``; ``keys[-1]`` is the one
    increments go to. ``kind`` is request|concurrent|tokens."""

    keys: tuple[str, ...]
    limit: int
    ttl: int              # seconds a key lives; 0 = no expiry (concurrency)
    reset_at: float       # when room frees up at the latest (the oldest bucket leaves, the day ends); 0: soon
    kind: str
    label: str            # e.g. "team radiology: requests per minute"

    @property
    def counts(self) -> bool:
        return self.kind in ("request", "concurrent")

    @property
    def key(self) -> str:
        return self.keys[-1]


@dataclass
class Admission:
    """What a request holds: release concurrency and correct its token reservation when it ends."""

    concurrency_keys: list[str] = field(default_factory=list)
    token_checks: list[Check] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    reserved: int = 0     # tokens reserved on every token check (settled to the real use)
    lease: str = ""       # the request's name on its concurrency counters


@functools.lru_cache(maxsize=4)
def _calendar(minute: int) -> tuple[str, str, float, float]:
    """Day and month names and their ends, for the UTC minute ``minute`` (cached: once a minute)."""
    tm = time.gmtime(minute * 60)
    next_month = calendar.timegm((tm.tm_year + (tm.tm_mon == 12), tm.tm_mon % 12 + 1, 1, 0, 0, 0))
    return (time.strftime("%Y-%m-%d", tm), time.strftime("%Y-%m", tm), (minute * 60 // 86400 + 1) * 86400, next_month)


def _sliding(base: str, bucket: int, buckets: int = MINUTE_BUCKETS) -> tuple[str, ...]:
    """The keys of a sliding window: the current bucket and the ``buckets - 1`` before it."""
    return tuple(f"{base}:{b}" for b in range(bucket - buckets + 1, bucket + 1))


def plan_checks(subjects: list[tuple[str, str, Limits]], now: float) -> list[Check]:
    """Counters for each (scope, name, limits), e.g. ("team", "radiology", Limits(rpm=60))."""
    return list(_plan(tuple(subjects), int(now // BUCKET), int(now // 60)))


@functools.lru_cache(maxsize=1024)
def _plan(subjects: tuple[tuple[str, str, Limits], ...], bucket: int, minute: int) -> tuple[Check, ...]:
    """The checks for ``subjects`` within one bucket of one minute: the same for every request
    of a key in those seconds, so they are made once (cached) instead of per request."""
    day, month, next_day, next_month = _calendar(minute)
    slides_at = (bucket + 1) * BUCKET  # the oldest bucket leaves the window
    ttl = BUCKET * (MINUTE_BUCKETS + 1)
    checks = []
    for scope, name, limits in subjects:
        base = f"q:{scope}:{name}"
        who = f"{scope} {name}"
        if limits.rpm is not None:
            checks.append(Check(_sliding(f"{base}:rq", bucket), limits.rpm, ttl, slides_at, "request",
                                f"{who}: requests per minute"))
        if limits.concurrent is not None:  # room frees when a request ends: retry after a second
            checks.append(Check((f"{base}:cl",), limits.concurrent, 0, 0.0, "concurrent", f"{who}: concurrent requests"))
        if limits.tpm is not None:
            checks.append(Check(_sliding(f"{base}:tk", bucket), limits.tpm, ttl, slides_at, "tokens",
                                f"{who}: tokens per minute"))
        if limits.daily_tokens is not None:
            checks.append(Check((f"{base}:td:{day}",), limits.daily_tokens, 2 * 86400, next_day, "tokens",
                                f"{who}: tokens per day"))
        if limits.monthly_tokens is not None:
            checks.append(Check((f"{base}:tm:{month}",), limits.monthly_tokens, 32 * 86400, next_month, "tokens",
                                f"{who}: tokens per month"))
    return tuple(checks)


def failed_sign_ins(user: str, limit: int, window: float, now: float) -> Check:
    """Failed password sign-ins with the user name ``user`` over the last ``window`` seconds, in
    minute buckets (whether or not the user exists: a refusal says nothing about that)."""
    minutes, bucket = max(1, math.ceil(window / 60)), int(now // 60)
    return Check(_sliding(f"q:signin:{user}", bucket, minutes), limit, (minutes + 1) * 60, (bucket + 1) * 60, "tokens",
                 f"user name {user}: failed password sign-ins")


class Counters(abc.ABC):
    unavailable: str | None = None  # why the counters cannot be reached now; None when they can

    @abc.abstractmethod
    async def admit(self, checks: list[Check], lease: str = "") -> tuple[int, list[int]]:
        """Atomically: if every check passes, increment the counting ones (a concurrency check
        by ``lease``). Return (index of the first failing check or -1, current value of each
        counter after the step)."""

    @abc.abstractmethod
    async def reserve(self, checks: list[Check], need: int, want: int) -> tuple[int, int, int]:
        """Atomically: room = the least of (limit − used); if room ≥ ``need``, add min(``want``, room)
        to every check. Return (tokens reserved, or -1 when refused; index of the tightest check; room)."""

    @abc.abstractmethod
    async def release(self, keys: list[str], lease: str = "") -> None: ...

    @abc.abstractmethod
    async def charge(self, checks: list[Check], tokens: int) -> None:
        """Add ``tokens`` (negative: give back) to each check's current key."""

    def recheck(self) -> None:
        """While :attr:`unavailable`, see again in the background whether the counters answer
        (readiness asks: it reports, and must not wait on a silent server)."""

    async def close(self) -> None:
        pass


class MemoryCounters(Counters):
    """One process: the event loop makes each method atomic.

    A key is only ever read within its window — its name carries its bucket, day or month,
    and it lives longer than the window that reads it — so expired keys are not looked for
    on every read: a sweep drops them, at most once a second."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.expiry: dict[str, float] = {}
        self._swept_at = 0.0

    def _sweep(self, now: float) -> None:
        if now - self._swept_at < 1.0:
            return
        self._swept_at = now
        for key in [key for key, at in self.expiry.items() if at <= now]:
            self.values.pop(key, None)
            del self.expiry[key]

    def _used(self, check: Check) -> int:
        return sum(map(self.values.get, check.keys, itertools.repeat(0)))  # a missing key counts 0

    def _add(self, check: Check, amount: int, now: float) -> None:
        key = check.keys[-1]
        if amount < 0 and key not in self.values:
            return  # a refund to a window that has expired
        self.values[key] = self.values.get(key, 0) + amount
        if check.ttl and key not in self.expiry:
            self.expiry[key] = now + check.ttl

    async def admit(self, checks: list[Check], lease: str = "") -> tuple[int, list[int]]:
        now = time.time()
        self._sweep(now)
        values = [self._used(c) for c in checks]
        for i, (check, value) in enumerate(zip(checks, values)):
            if value >= check.limit:
                return i, values
        for i, check in enumerate(checks):
            if check.counts:
                self._add(check, 1, now)
                values[i] += 1
        return -1, values

    async def reserve(self, checks: list[Check], need: int, want: int) -> tuple[int, int, int]:
        now = time.time()
        self._sweep(now)
        rooms = [c.limit - self._used(c) for c in checks]
        tightest = min(range(len(checks)), key=rooms.__getitem__)
        room = rooms[tightest]
        if room < need:
            return -1, tightest, room
        grant = min(want, room)
        for check in checks:
            self._add(check, grant, now)
        return grant, tightest, room

    async def release(self, keys: list[str], lease: str = "") -> None:
        for key in keys:
            self.values[key] = max(self.values.get(key, 0) - 1, 0)

    async def charge(self, checks: list[Check], tokens: int) -> None:
        now = time.time()
        self._sweep(now)
        for check in checks:
            self._add(check, tokens, now)


# KEYS: every check's keys in turn. ARGV: number of checks, then per check: limit, number of
# keys, ttl, and how it counts ("0": not, "1": by one, "lease": a lease in a sorted set scored
# by when it lapses, on the server's clock).
_READ_CHECKS = """
local n = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local used, last, ttls, counts = {}, {}, {}, {}
local pos, a = 1, 2
for i = 1, n do
  local nk = tonumber(ARGV[a + 1])
  local sum = 0
  if ARGV[a + 3] == 'lease' then
    redis.call('ZREMRANGEBYSCORE', KEYS[pos], '-inf', now)
    sum = redis.call('ZCARD', KEYS[pos])
  else
    for k = pos, pos + nk - 1 do sum = sum + tonumber(redis.call('GET', KEYS[k]) or '0') end
  end
  used[i], last[i], ttls[i], counts[i] = sum, pos + nk - 1, tonumber(ARGV[a + 2]), ARGV[a + 3]
  pos, a = pos + nk, a + 4
end
local function add(i, amount)
  redis.call('INCRBY', KEYS[last[i]], amount)
  if ttls[i] > 0 and redis.call('TTL', KEYS[last[i]]) < 0 then redis.call('EXPIRE', KEYS[last[i]], ttls[i]) end
end
local function limit(i) return tonumber(ARGV[2 + 4 * (i - 1)]) end
"""
# ARGV after the checks: the lease's name and how long it lasts unrenewed (seconds).
ADMIT_LUA = _READ_CHECKS + """
local lease, lasts = ARGV[2 + 4 * n], tonumber(ARGV[3 + 4 * n])
for i = 1, n do
  if used[i] >= limit(i) then return {i - 1, used} end
end
for i = 1, n do
  if counts[i] == '1' then add(i, 1); used[i] = used[i] + 1 end
  if counts[i] == 'lease' then
    redis.call('ZADD', KEYS[last[i]], now + lasts, lease)
    redis.call('EXPIRE', KEYS[last[i]], math.ceil(2 * lasts))
    used[i] = used[i] + 1
  end
end
return {-1, used}
"""
# KEYS: concurrency counters; ARGV: how long a lease lasts, then each key's lease. Only a lease
# still held is renewed (XX): one released meanwhile stays released.
RENEW_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local lasts = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lasts, ARGV[i + 1])
  redis.call('EXPIRE', KEYS[i], math.ceil(2 * lasts))
end
return 0
"""
# ARGV after the checks: need, want.
RESERVE_LUA = _READ_CHECKS + """
local need, want = tonumber(ARGV[2 + 4 * n]), tonumber(ARGV[3 + 4 * n])
local tightest, room = 1, limit(1) - used[1]
for i = 2, n do
  if limit(i) - used[i] < room then tightest, room = i, limit(i) - used[i] end
end
if room < need then return {-1, tightest - 1, room} end
local grant = math.min(want, room)
for i = 1, n do add(i, grant) end
return {grant, tightest - 1, room}
"""

# A refund (negative) to a key that expired meanwhile is dropped: a window never goes below zero.
CHARGE_LUA = """
local amount = tonumber(ARGV[1])
for i = 1, #KEYS do
  if amount > 0 or redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], amount)
    if tonumber(ARGV[i + 1]) > 0 and redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[i + 1]) end
  end
end
return 0
"""


class RedisCounters(Counters):
    """Several gateways: counters in Redis, each step one Lua script (atomic on the server);
    concurrency as leases, renewed every third of ``lease_seconds`` while held."""

    def __init__(self, url: str | None, lease_seconds: float = 60.0, sentinels: Sequence[str] = (),
                 master: str = "mymaster", password: str | None = None):
        """Redis at ``url`` (a URL or a Unix socket path), or the master the ``sentinels`` name
        ``master`` (asked again whenever its connection fails: a failover is followed); ``password``:
        the servers' (a password in ``url`` wins)."""
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.asyncio.sentinel import Sentinel
        from redis.backoff import NoBackoff

        from ..config import host_port

        # once more at once (a pooled connection a restarted Redis closed), not redis-py's three backed-off retries
        options = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S,
                   "retry": Retry(NoBackoff(), 1), "password": password}
        if sentinels:
            timeouts = {k: v for k, v in options.items() if k not in ("retry", "password")}  # Sentinels: no password
            self.redis = Sentinel([host_port(a) for a in sentinels], sentinel_kwargs=timeouts,
                                  **timeouts).master_for(master, **options)
            self.fix = f"check quotas.redis_sentinels and that their master {master!r} runs"
        else:
            self.redis = redis.Redis.from_url(url, **options) if "://" in url else \
                redis.Redis(unix_socket_path=url, **options)
            self.fix = "check quotas.redis_url and that Redis runs"
        self._failures = (redis.RedisError, OSError)
        self._admit = self.redis.register_script(ADMIT_LUA)
        self._reserve = self.redis.register_script(RESERVE_LUA)
        self._charge = self.redis.register_script(CHARGE_LUA)
        self._renew = self.redis.register_script(RENEW_LUA)
        self.lease_seconds = lease_seconds
        self.held: dict[str, list[str]] = {}  # lease -> its concurrency keys, renewed while held
        self._renewer: asyncio.Task | None = None
        self._pinger: asyncio.Task | None = None

    async def _call(self, step):
        """Await one Redis step; a failure to reach Redis is StorageUnavailableError (503)."""
        try:
            result = await step
        except self._failures as exc:
            reason = first_line(exc).rstrip(".")
            if self.unavailable is None:
                log.warning("quota store (Redis) unavailable: %s; requests with limits get 503 until it answers", reason)
            self.unavailable = reason
            raise StorageUnavailableError(f"the quota store (Redis) is unavailable: {reason}", fix=self.fix) from None
        if self.unavailable is not None:
            log.warning("quota store (Redis) answers again")
            self.unavailable = None
        return result

    @staticmethod
    def _args(checks: list[Check]) -> tuple[list[str], list]:
        keys, args = [], [len(checks)]
        for c in checks:
            keys += c.keys
            args += [c.limit, len(c.keys), c.ttl, "lease" if c.kind == "concurrent" else "1" if c.counts else "0"]
        return keys, args

    async def admit(self, checks: list[Check], lease: str = "") -> tuple[int, list[int]]:
        keys, args = self._args(checks)
        failed, values = await self._call(self._admit(keys=keys, args=[*args, lease, self.lease_seconds]))
        held = [c.key for c in checks if c.kind == "concurrent"]
        if int(failed) < 0 and held:
            self.held[lease] = held
            if self._renewer is None or self._renewer.done():
                self._renewer = asyncio.create_task(self._renew_held())
        return int(failed), [int(v) for v in values]

    async def reserve(self, checks: list[Check], need: int, want: int) -> tuple[int, int, int]:
        keys, args = self._args(checks)
        grant, tightest, room = await self._call(self._reserve(keys=keys, args=[*args, need, want]))
        return int(grant), int(tightest), int(room)

    async def release(self, keys: list[str], lease: str = "") -> None:
        self.held.pop(lease, None)
        if keys:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.zrem(key, lease)
                await self._call(pipe.execute())

    async def charge(self, checks: list[Check], tokens: int) -> None:
        if checks and tokens:
            await self._call(self._charge(keys=[c.key for c in checks], args=[tokens, *(c.ttl for c in checks)]))

    def recheck(self) -> None:
        if self.unavailable is not None and (self._pinger is None or self._pinger.done()):
            self._pinger = asyncio.create_task(self._ping())

    async def _ping(self) -> None:
        try:
            await self._call(self.redis.ping())
        except StorageUnavailableError:
            pass  # still unavailable: said in the log once

    async def _renew_held(self) -> None:
        """Renew every held lease a few times per lease; ends when none is held."""
        while self.held:
            await asyncio.sleep(self.lease_seconds / 3)
            pairs = [(key, lease) for lease, keys in list(self.held.items()) for key in keys]
            if not pairs:
                break
            try:
                await self._call(self._renew(keys=[key for key, _ in pairs],
                                             args=[self.lease_seconds, *(lease for _, lease in pairs)]))
            except StorageUnavailableError:
                pass  # said in the log once; the next turn tries again

    async def close(self) -> None:
        for task in (self._renewer, self._pinger):
            if task is not None:
                task.cancel()
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
        concurrency = [c.key for c in checks if c.kind == "concurrent"]
        lease = os.urandom(9).hex() if concurrency else ""
        failed, values = await self.counters.admit(checks, lease)
        if failed >= 0:
            raise _refusal(checks[failed], checks[failed].label.rpartition(": ")[2], now,
                           headers=_headers(checks, values, now))
        return Admission(concurrency, [c for c in checks if c.kind == "tokens"], _headers(checks, values, now),
                         lease=lease)

    async def reserve(self, admission: Admission, prompt_tokens: int, max_tokens: int | None, room_in_context: int) -> int:
        """Reserve the request's most against its token limits; return the completion tokens it may use.

        With ``max_tokens`` the whole of it must fit, or 429; without, the completion gets what
        is left (at most ``room_in_context``) and the caller passes that on as the engine's
        ``max_tokens``. No token limit: nothing is reserved and the answer is ``max_tokens`` or
        ``room_in_context``."""
        if not admission.token_checks:
            return max_tokens if max_tokens is not None else room_in_context
        want = prompt_tokens + (max_tokens if max_tokens is not None else room_in_context)
        need = want if max_tokens is not None else prompt_tokens + 1
        granted, tightest, room = await self.counters.reserve(admission.token_checks, need, want)
        if granted < 0:
            check = admission.token_checks[tightest]
            asked = f"{need} tokens (prompt {prompt_tokens}" + (f" + max_tokens {max_tokens})" if max_tokens else ")")
            raise _refusal(check, check.label.rpartition(": ")[2], time.time(), detail=f"; this request needs up to {asked}, "
                                                                  f"{max(room, 0)} are left")
        admission.reserved = granted
        return granted - prompt_tokens

    async def unreserve(self, admission: Admission) -> None:
        """Give back the request's reservation (it runs again, for another model: a fallback)."""
        if admission.reserved:
            await self.counters.charge(admission.token_checks, -admission.reserved)
            admission.reserved = 0

    async def settle(self, admission: Admission, tokens: int) -> None:
        """Release the request's concurrency and correct its reservation. Never raises: the
        request has been answered. If the counters cannot be reached, its lease lapses by
        itself and its reservation (its most) stays charged."""
        try:
            await self.counters.release(admission.concurrency_keys, admission.lease)
            await self.counters.charge(admission.token_checks, tokens - admission.reserved)
        except StorageUnavailableError:
            pass  # the counters said so in the log


def _refusal(check: Check, what: str, now: float, *, headers: dict[str, str] | None = None,
             detail: str = "") -> RateLimitError:
    retry = max(1, math.ceil(check.reset_at - now))
    return RateLimitError(f"rate limit reached: {check.label} is {check.limit}{detail}",
                          fix=f"retry after {retry} s, or ask for a higher limit", retry_after=retry,
                          limit_headers=headers, scope=check.key.split(":")[1], limit=what.replace(" ", "_"))


def _headers(checks: list[Check], values: list[int], now: float) -> dict[str, str]:
    """OpenAI-style x-ratelimit-* headers from the tightest request and token counters."""
    tightest: dict[str, tuple[Check, int]] = {}  # kind → the check with the least room (the first, on a tie)
    for check, value in zip(checks, values):
        best = tightest.get(check.kind)
        if best is None or check.limit - value < best[0].limit - best[1]:
            tightest[check.kind] = (check, value)
    headers = {}
    for kind, suffix in (("request", "requests"), ("tokens", "tokens")):
        if kind in tightest:
            check, value = tightest[kind]
            headers[f"x-ratelimit-limit-{suffix}"] = str(check.limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(max(check.limit - value, 0))
            headers[f"x-ratelimit-reset-{suffix}"] = f"{max(check.reset_at - now, 0):.0f}s"
    return headers
