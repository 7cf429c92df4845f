"""Governance as one service: the identity store, the policy, the authenticator, bootstrap,
and the admin operations with their tenant rules.

Separation of duties (see policy.py): nobody mints a key, or gives a role, that can do what
they cannot; a limit is loosened only at the rank that imposed it. Everyone manages their own
keys (mint, list, revoke); managing other users' keys takes ``keys:manage``. Roles no caller
can give through the API (an auditor, a model operator) come from bootstrap — which makes the
first ``admin``, ``security`` admin and ``auditor`` — or from the host itself
(:func:`provision_locally`).

Tenant rules, enforced here once for the admin API and the CLI alike:
- a ``team``-scoped caller sees and changes only its own team's users and keys; another
  team's object answers exactly like one that does not exist (404);
- only a ``global`` caller creates teams or gives a user a global role;
- keys are shown in full once, at creation; afterwards only their id.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import threading
import time

import anyio
from pathlib import Path

from ..config import Settings
from ..errors import (AuthenticationError, ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError,
                      RateLimitError)
from . import audit_writers, roster
from .audit import AuditLog, read_records, usage_since, writer_id
from .bodies import BodyVault
from .quotas import Limits, MemoryCounters, Quotas, RedisCounters, failed_sign_ins
from .auth import Authenticator, Principal
from .keys import hash_key, new_key, write_secret_file
from .pepper import load_shared_pepper
from .passwords import SESSION_KEY_NAME, check_strength, hash_password
from .policy import Policy
from .sessions import Sessions
from .store import LIMIT_FIELDS, KeyRecord, open_identity_store

log = logging.getLogger("seekstack.governance")

MAX_OWN_KEYS = 100  # active keys a user may mint for itself without keys:manage
BOOTSTRAP_TEAM = "default"
BOOTSTRAP_USERS = {"system": ("admin", "admin"), "security": ("security", "security_admin"),
                   "audit": ("auditor", "auditor")}  # duty → (user, role), one key file each


class Governance:
    def __init__(self, settings: Settings):
        self.settings = settings
        state = settings.state_path
        self.store = open_identity_store(settings)
        self.policy = Policy.with_custom({name: role.model_dump() for name, role in settings.roles.items()})
        self.auth = Authenticator(self.store, load_shared_pepper(state / "pepper.key", self.store), self.policy)
        self.sessions = Sessions(self.store, self.auth.pepper, settings.console.idle_timeout, settings.console.max_age)
        directory = audit_dir(settings)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        writer = writer_id(directory)
        try:  # one process per chain: a copy of a running gateway's audit directory is refused, untouched
            instance = roster.claim(self.store, writer, f"{settings.server.host}:{settings.server.port}",
                                    str(directory), roster.policy_of(settings))
        except BaseException:
            self.store.close()
            raise
        try:
            self.audit = AuditLog(directory, max_bytes=settings.audit.max_bytes)
            audit_writers.attach(self.audit, self.store)  # this chain, among every gateway's, in the shared store
        except BaseException:
            with contextlib.suppress(Exception):  # the store may be what failed: the row turns silent instead
                self.store.gateway_stopped(writer, instance)
            self.store.close()
            raise
        self.fleet = roster.Fleet(writer, instance)
        self._read_fleet()  # the others, once now: a gateway whose policy differs from theirs says so at start
        self.bodies = BodyVault(audit_dir(settings), settings.audit.data_key_rotation_hours) \
            if settings.audit.capture_bodies else None
        self.admin_key_file = admin_key_path(settings)
        q = settings.quotas
        password = os.environ.get(q.redis_password_env) if q.redis_password_env else None
        counters = RedisCounters(q.redis_url, q.concurrency_lease_s, q.redis_sentinels, q.redis_sentinel_master,
                                 password) if q.store == "redis" else MemoryCounters()
        self.quotas = Quotas(counters, self._limits_for)
        self._limits: dict[tuple[str, str], Limits] | None = None  # None: load on next use
        self._usage_lock = threading.Lock()  # one count at a time: the periodic one, an admin's, shutdown's
        self._usage_mark = self.store.usage_mark(self.audit.writer)
        if self._usage_mark is None:  # a new chain (or one from before usage came from it): count from here on
            self._usage_mark = self.audit.seq
            self.store.add_usage([], mark=(self.audit.writer, self.audit.seq))

    def flush(self) -> None:
        """Write batched last-used times (of keys and sessions) and the usage not yet counted, now (at shutdown)."""
        self._write(*self._take())

    async def flush_off_loop(self) -> None:
        """The same, periodically: the batches are taken on the event loop (where requests add to
        them) and written in a worker thread; if the write fails they are put back for the next."""
        used, touched = self._take()
        try:
            await anyio.to_thread.run_sync(self._write, used, touched)
        except Exception:
            self.sessions.note_touched(touched)
            for kid, when in used.items():
                self.auth.note_used(kid, when)
            raise

    def _take(self) -> tuple[dict, dict]:
        return self.auth.take_last_used(), self.sessions.take_touched()

    def _write(self, used: dict, touched: dict) -> None:
        self.store.gateway_seen(self.audit.writer, self.fleet.instance)  # the roster's heartbeat
        self._read_fleet()
        if used:
            self.store.touch_keys(used)
        if touched:
            self.store.touch_sessions(touched)
        self.count_usage()

    def _read_fleet(self) -> None:
        """The roster as it is now (for metrics and the log); a process that enrolled under this
        gateway's writer since makes its chain a diverged one (two copies of one audit directory)."""
        self.fleet.read(self.store)
        other = self.fleet.taken_by
        if other is not None and self.audit.diverged is None:
            self.audit.diverged = (f"another process (pid {other['pid']} on {other['host']}) enrolled under this "
                                   f"chain's writer at {other['started']:.0f}: two copies of one audit directory")
            log.error("audit chain %s (%s) diverged: %s; stop one of them and give it a fresh audit.dir (keep its "
                      "directory as evidence)", self.audit.writer, self.audit.path.parent, self.audit.diverged)

    def count_usage(self) -> None:
        """Add to usage what this gateway's audit chain answered since it was last counted.

        Usage is read from the chain's ``response`` records, not kept in memory: the rows and
        the chain position they reach are written in one commit, so a gateway killed at any
        moment loses no usage it had committed to the audit log, and counts none twice (the
        next start goes on from the position)."""
        with self._usage_lock:
            rows, last = usage_since(self.audit.path, self._usage_mark)
            if last == self._usage_mark:
                return
            self.store.add_usage(rows, mark=(self.audit.writer, last))
            self._usage_mark = last

    async def aclose(self) -> None:
        self.audit.flush()  # the last response records, then their usage
        try:
            self.flush()
        except Exception as exc:  # the store or the log is away: the next start counts what is left
            log.error("usage and last-used times not written at shutdown: %s", type(exc).__name__)
        try:
            self.store.gateway_stopped(self.audit.writer, self.fleet.instance)
        except Exception as exc:  # the roster shows it silent instead
            log.warning("this gateway's stop not written to the roster: %s", type(exc).__name__)
        await self.quotas.counters.close()
        self.audit.close()  # its last checkpoint is published to the store: close the store after
        self.store.close()
        if self.bodies is not None:
            self.bodies.close()

    # ------------------------------------------------------------ retention
    async def run_retention(self) -> dict:
        """Apply the retention policy now; the run is itself an audit record that proves what it deleted.

        The records to delete are found and verified in a process of its own (a walk over the
        oldest part of the chain); the signed anchor moves past them (one small commit), and they
        are deleted a small chunk at a time, with pauses between, on the writer's connection."""
        now, a = time.time(), self.settings.audit
        plan = await self.audit.retention_plan_apart(now - a.retention_days * 86400)
        proof = self.audit.apply_retention(plan) if plan is not None else {"deleted": 0}
        await self.audit.delete_retained()  # also what a run cut short left
        bodies = await self.bodies.purge(now - a.bodies_days * 86400, now - a.important_bodies_days * 86400) \
            if self.bodies is not None else 0
        deleted = {"audit_records": proof["deleted"], "bodies": bodies}
        await anyio.to_thread.run_sync(self.sessions.purge, now)
        await self.audit.append({"event": "retention", "decision": "allow", "retention_days": a.retention_days,
                                 "bodies_days": a.bodies_days, "important_bodies_days": a.important_bodies_days,
                                 "bodies": deleted["bodies"], **proof})
        log.info("retention: %s", deleted)
        return deleted

    # ------------------------------------------------------------ quotas and usage
    def refresh_if_changed(self) -> None:
        """Another gateway sharing the database changed keys or limits: drop the caches at once."""
        if self.store.changed_elsewhere():
            self.auth.forget_all()
            self.sessions.forget_all()
            self._limits = None

    async def look_up(self, authorization: str | None, session_token: str | None = None) -> None:
        """Read what a request is about to need and the caches lack — its key (or its console
        session and the session's key), the limits — in a worker thread. A database server may
        be slow or silent: waiting for it must not hold the event loop, and every stream on it.
        (Misses are rare: a key's first use, or the first request after a change anywhere in
        the fleet dropped the caches.)"""
        if authorization is None and session_token is not None:
            kid = self.sessions.cached_key(session_token)
            if kid is None or not self.auth.cached(kid) or self._limits is None:
                await anyio.to_thread.run_sync(self._look_up_session, session_token)
            return
        kid = self.auth.uncached(authorization)
        if kid is not None or self._limits is None:
            await anyio.to_thread.run_sync(self._look_up, kid)

    def _look_up(self, kid: str | None) -> None:
        if kid is not None:
            self.auth.look_up(kid)
        self._limits_for("key", "")

    def _look_up_session(self, token: str) -> None:
        self._look_up(self.sessions.look_up(token))

    def _limits_for(self, scope: str, name: str) -> Limits | None:
        if self._limits is None:
            self._limits = {(r["scope"], r["name"]): Limits(**{f: r[f] for f in LIMIT_FIELDS}) for r in self.store.limits()}
        return self._limits.get((scope, name))

    def set_limits(self, caller: Principal, scope: str, name: str, values: dict) -> dict:
        """Set a subject's limits. Tightening is open to whoever manages its quotas; loosening a
        limit (raising or removing it) only to a caller of the rank that imposed it, or above."""
        if scope not in ("key", "user", "team"):
            raise InvalidRequestError(f"scope must be key, user or team, not {scope!r}", param="scope")
        team = {"team": lambda: name, "user": lambda: (self.store.user(name) or {}).get("team"),
                "key": lambda: getattr(self.store.key(name), "team", None)}[scope]()
        if team is None or not caller.sees_team(team):
            raise NotFoundError(f"{scope} {name!r} not found")
        if scope == "team" and not caller.is_global:
            raise PermissionDeniedError("only a global administrator sets a team's limits")
        for field_name, value in values.items():
            if field_name not in LIMIT_FIELDS or (value is not None and (not isinstance(value, int) or value < 0)):
                raise InvalidRequestError(f"{field_name}: must be one of {', '.join(LIMIT_FIELDS)} with a whole number ≥ 0",
                                          param=field_name)
        current = self.store.limit(scope, name)
        rank = caller.role.rank
        if current is not None and current["imposed_rank"] > rank and _loosens(current, values):
            raise PermissionDeniedError(f"the limits of {scope} {name!r} were imposed by a global role; a "
                                        f"{caller.role.scope}-scoped role may tighten them but not lift them",
                                        fix="ask a global administrator")
        self.store.set_limits(scope, name, values, max(rank, current["imposed_rank"] if current else 0))
        self._limits = None
        return {"scope": scope, "name": name, **{f: values.get(f) for f in LIMIT_FIELDS}}

    def list_limits(self, caller: Principal) -> list[dict]:
        rows = self.store.limits()
        if caller.is_global:
            return rows
        visible = {("team", caller.team)} | {("user", u["name"]) for u in self.store.users(caller.team)} \
            | {("key", k.id) for k in self.store.keys(caller.team)}
        return [r for r in rows if (r["scope"], r["name"]) in visible]

    def usage(self, caller: Principal, *, since_day: str | None = None) -> list[dict]:
        if since_day is not None:
            try:
                if datetime.date.fromisoformat(since_day).isoformat() != since_day:  # 20261101, 2026-W48 …
                    raise ValueError(since_day)
            except ValueError:
                raise InvalidRequestError(f"since {since_day!r} is not a day", fix="use YYYY-MM-DD, e.g. 2026-11-01",
                                          param="since") from None
        return self.store.usage(team=None if caller.is_global else caller.team, since_day=since_day)

    # ------------------------------------------------------------ reading the audit log
    def audit_records(self, caller: Principal, *, since: float | None = None, until: float | None = None,
                      filters: dict[str, str] | None = None, limit: int = 1000, seq: int | None = None,
                      before_seq: int | None = None, newest_first: bool = False) -> list[dict]:
        """Audit records, oldest first (or newest first); a ``team``-scoped caller reads only its own team's."""
        filters = dict(filters or {})
        if not caller.is_global:
            filters["team"] = caller.team
        records = []
        for record in read_records(self.audit.path, since=since, until=until, filters=filters, seq=seq,
                                   before_seq=before_seq, newest_first=newest_first):
            records.append(record)
            if len(records) >= limit:
                break
        return records

    def audit_body(self, caller: Principal, request_id: str) -> dict:
        """A captured request and answer, decrypted; another team's answers like one that does not exist."""
        body = self.bodies.read(request_id) if self.bodies is not None else None
        if body is None or not caller.sees_team(body.get("team")):
            raise NotFoundError(f"no captured body for request {request_id!r}",
                                fix="bodies are kept only with audit.capture_bodies: true, and only for their retention time")
        return {"request_id": request_id, **{k: v for k, v in body.items() if k != "team"}}

    def bootstrap(self) -> str | None:
        """With no key at all: create the first principal of each duty — the system ``admin``, the
        ``security`` admin and the ``auditor`` — each with a key in its own 0600 file beside
        ``admin.key``; return the admin key (once). The duties start apart and stay apart: none
        of them can make another's role."""
        if not self.store.is_empty():
            self._bootstrap_missing_duties()
            return None
        keys = {duty: self._first_principal(duty) for duty in BOOTSTRAP_USERS}
        for duty, key in reversed(keys.items()):  # admin.key last: its presence means bootstrap finished
            write_secret_file(duty_key_file(self.admin_key_file, duty), key.encode() + b"\n")
        log.warning("created the first key of each duty (mode 0600): system admin %s, security admin %s, "
                    "auditor %s — hand each to its own person", self.admin_key_file,
                    duty_key_file(self.admin_key_file, "security"), duty_key_file(self.admin_key_file, "audit"))
        return keys["system"]

    def _bootstrap_missing_duties(self) -> None:
        """A state directory bootstrapped before the duties were split has an admin but may have
        nobody for the security or audit duty — and no one could now give those roles. Each such
        duty gets its first principal and 0600 key file, as a new install would."""
        users = self.store.users()
        for duty in ("security", "audit"):
            holders = [u for u in users if (role := self.policy.role(u["role"])) is not None and duty in role.duties()]
            target = duty_key_file(self.admin_key_file, duty)
            if holders or target.exists():
                continue
            write_secret_file(target, self._first_principal(duty, fresh_name=True).encode() + b"\n")
            log.warning("no one held the %s duty: created its first principal (role %s); its key is in %s "
                        "(mode 0600)", duty, BOOTSTRAP_USERS[duty][1], target)

    def _first_principal(self, duty: str, fresh_name: bool = False) -> str:
        """Make the bootstrap user of ``duty`` (under a free name when ``fresh_name``) and mint its key."""
        name, role = BOOTSTRAP_USERS[duty]
        while fresh_name and self.store.user(name) is not None:
            name += "_"
        if not self.store.team_exists(BOOTSTRAP_TEAM):
            self.store.create_team(BOOTSTRAP_TEAM)
        if self.store.user(name) is None:
            self.store.create_user(name, BOOTSTRAP_TEAM, role)
        return self._mint(name, f"bootstrap {role} key", ["*"], ["*"], None)[1]

    # ------------------------------------------------------------ keys
    def create_key(self, caller: Principal, *, user: str | None, name: str, models: list[str],
                   endpoints: list[str], expires_in_days: float | None, role: str | None = None) -> tuple[KeyRecord, str]:
        """A new key for ``user`` (default: the caller) carrying ``role`` — the user's own when None,
        ``least`` for the least-privileged built-in role the user's role holds.

        The key's role may not exceed its user's, and the caller's role must hold it entirely:
        nobody mints a key that can do what they cannot (for themselves neither)."""
        owner = self._visible_user(caller, user or caller.user)
        if owner["name"] != caller.user and not caller.role.grants("keys:manage"):
            raise PermissionDeniedError(f"role {caller.role.name!r} mints keys for its own user only",
                                        fix="leave `user` out, or ask someone with keys:manage")
        now = time.time()
        if not caller.role.grants("keys:manage") and sum(
                1 for k in self.store.keys(caller.team)
                if k.user == caller.user and k.live(now) and k.name != SESSION_KEY_NAME) >= MAX_OWN_KEYS:
            raise ConflictError(f"user {caller.user!r} already has {MAX_OWN_KEYS} active keys",
                                fix="revoke keys you no longer use (seekstack keys list / revoke)")
        if expires_in_days is not None and expires_in_days <= 0:
            raise InvalidRequestError("expires_in_days must be positive", param="expires_in_days")
        owner_role = self._role(owner["role"], "the user's role")
        key_role = self.policy.least_held_by(owner_role) if role == "least" else \
            self._role(role, "role") if role is not None else owner_role
        if not owner_role.holds(key_role):
            raise InvalidRequestError(f"role {key_role.name!r} exceeds user {owner['name']!r}'s role "
                                      f"{owner_role.name!r} ({owner_role.lacks(key_role)})", param="role")
        if not caller.role.holds(key_role):
            raise PermissionDeniedError(f"a key with role {key_role.name!r} can do what role {caller.role.name!r} "
                                        f"cannot ({caller.role.lacks(key_role)})",
                                        fix="ask for a key with a lesser role (`role`), or have someone who "
                                            "holds that role mint it")
        expires = time.time() + expires_in_days * 86400 if expires_in_days else None
        return self._mint(owner["name"], name, models or ["*"], endpoints or ["*"], expires,
                          None if key_role is owner_role else key_role.name)

    def _role(self, name: str, what: str):
        role = self.policy.role(name)
        if role is None:
            raise InvalidRequestError(f"{what} {name!r} does not exist; roles: {', '.join(sorted(self.policy.roles))}",
                                      param="role")
        return role

    def _mint(self, user: str, name: str, models: list[str], endpoints: list[str], expires: float | None,
              role: str | None = None):
        kid, key = new_key()
        record = self.store.add_key(kid, hash_key(self.auth.pepper, key), name, user, models, endpoints, expires, role)
        return record, key

    def list_keys(self, caller: Principal) -> list[KeyRecord]:
        keys = self.store.keys(None if caller.is_global else caller.team)
        return keys if caller.role.grants("keys:manage") else [k for k in keys if k.user == caller.user]

    def revoke_key(self, caller: Principal, kid: str) -> KeyRecord:
        record = self.store.key(kid)
        if record is None or not caller.sees_team(record.team) or (
                record.user != caller.user and not caller.role.grants("keys:manage")):
            raise NotFoundError(f"key {kid!r} not found")
        self.store.revoke_key(kid)
        self.auth.forget(kid)
        revoked = self.store.key(kid)
        assert revoked is not None
        return revoked

    # ------------------------------------------------------------ users and teams
    def create_team(self, caller: Principal, name: str) -> dict:
        if not caller.is_global:
            raise PermissionDeniedError("only a global administrator creates teams")
        _check_name(name, "team")
        return self.store.create_team(name)

    def list_teams(self, caller: Principal) -> list[dict]:
        teams = self.store.teams()
        return teams if caller.is_global else [t for t in teams if t["name"] == caller.team]

    def create_user(self, caller: Principal, *, name: str, team: str | None, role: str) -> dict:
        _check_name(name, "user")
        team = team or caller.team
        if not caller.sees_team(team):
            raise NotFoundError(f"team {team!r} not found")
        target = self._role(role, "role")
        if target.scope == "global" and not caller.is_global:
            raise PermissionDeniedError(f"only a global administrator gives the global role {role!r}")
        if not caller.role.holds(target):
            raise PermissionDeniedError(f"role {role!r} can do what role {caller.role.name!r} cannot "
                                        f"({caller.role.lacks(target)}): nobody gives a role they do not hold",
                                        fix="have someone who holds that role create the user")
        return self.store.create_user(name, team, role)

    def set_password(self, caller: Principal, name: str, password: str) -> dict:
        """Set a user's console password: one's own, or — with ``users:manage`` — that of a user
        whose role the caller holds entirely (a password signs in as that user: nobody gets one
        for a role they do not hold)."""
        user = self._visible_user(caller, name)
        if user["name"] != caller.user:
            if not caller.role.grants("users:manage"):
                raise PermissionDeniedError(f"role {caller.role.name!r} sets its own user's password only",
                                            fix="leave out other users, or ask someone with users:manage")
            role = self._role(user["role"], "the user's role")
            if not caller.role.holds(role):
                raise PermissionDeniedError(f"user {name!r} has role {role.name!r}, which can do what role "
                                            f"{caller.role.name!r} cannot ({caller.role.lacks(role)})",
                                            fix="the user sets it, signed in with a key of their own")
        check_strength(password)
        self.store.set_password(user["name"], hash_password(self.auth.pepper, password))
        return {"user": user["name"], "password": "set",
                "sessions_ended": self._end_password_sessions(user["name"], keep=caller.key_id)}

    def _end_password_sessions(self, user: str, keep: str | None) -> int:
        """A new password ends the console sessions the old one opened, on every gateway (their
        minted keys revoked: the change feed tells the others) — all but the one it is set from."""
        ended = [k.id for k in self.store.keys() if k.user == user and k.name == SESSION_KEY_NAME
                 and k.revoked is None and k.id != keep]
        for kid in ended:
            self.store.revoke_key(kid)
            self.auth.forget(kid)
        return len(ended)

    async def sign_in_with_password(self, user: str, password: str) -> Principal:
        """The user a console password proves (scrypt, in a worker thread). Failures are counted
        per user name on every gateway together (the quota counters); past
        ``console.password_failures`` within ``console.password_window``, that name is refused
        (429) without a look at the password, whoever tries it, until the oldest failures age out."""
        c = self.settings.console
        check = failed_sign_ins(user[:64], c.password_failures, c.password_window, time.time())
        if (await self.quotas.counters.admit([check]))[0] >= 0:  # reached (a failure check counts nothing here)
            retry = max(1, math.ceil(check.reset_at - time.time()))
            raise RateLimitError(f"too many failed password sign-ins with this user name ({c.password_failures} "
                                 f"within {c.password_window:.0f} s)", retry_after=retry,
                                 fix=f"retry after {retry} s, or sign in with an API key",
                                 scope="user", limit="password_failures")
        try:
            return await anyio.to_thread.run_sync(self.auth.authenticate_password, user, password)
        except AuthenticationError:
            await self.quotas.counters.charge([check], 1)
            raise

    def mint_session_key(self, principal: Principal) -> str:
        """A key for a password sign-in's session, with the user's role, expiring with the session;
        its secret is never shown (the session holds its id). Returns the key id."""
        expires = time.time() + self.settings.console.max_age
        record, _ = self._mint(principal.user, SESSION_KEY_NAME, ["*"], ["*"], expires)
        return record.id

    def end_session(self, token: str, kid: str | None) -> None:
        """Sign out: end the session everywhere; a key minted for a password sign-in goes with it."""
        self.sessions.end(token)
        record = self.store.key(kid) if kid else None
        if record is not None and record.name == SESSION_KEY_NAME and record.revoked is None:
            self.store.revoke_key(kid)
            self.auth.forget(kid)

    def replace_session(self, token: str) -> None:
        """A browser signing in again while it holds a session: that one ends (its minted key with it)."""
        try:
            _, kid = self.sessions.key_of(token)
        except AuthenticationError:
            return  # over already
        self.end_session(token, kid)

    def gateways(self) -> list[dict]:
        """Every gateway on this governance database, with its state (``governance/roster.py``)."""
        return roster.listed(self.store, self.audit.writer)

    def list_users(self, caller: Principal) -> list[dict]:
        return self.store.users(None if caller.is_global else caller.team)

    def _visible_user(self, caller: Principal, name: str) -> dict:
        user = self.store.user(name)
        if user is None or not caller.sees_team(user["team"]):
            raise NotFoundError(f"user {name!r} not found")
        return user


def provision_locally(settings: Settings, name: str, role: str, team: str) -> str:
    """Create a user with any role and its first key, straight in the identity store; return the key.

    The host's own path, for roles nobody can give through the API (an auditor, a team's
    auditor): it needs the state directory — the pepper and the database — so only whoever
    runs the gateway's host can take it, and that person holds every key file already."""
    _check_name(name, "user")
    policy = Policy.with_custom({n: r.model_dump() for n, r in settings.roles.items()})
    if policy.role(role) is None:
        raise InvalidRequestError(f"role {role!r} does not exist; roles: {', '.join(sorted(policy.roles))}",
                                  param="role")
    state = settings.state_path
    if settings.storage.url is None and not (state / "seekstack.db").exists():
        raise NotFoundError(f"no identity store in {state}", fix="start `seekstack serve` once, or pass its --config")
    store = open_identity_store(settings)
    try:
        pepper = load_shared_pepper(state / "pepper.key", store)
        store.create_user(name, team, role)
        kid, key = new_key()
        store.add_key(kid, hash_key(pepper, key), "provisioned on the host", name,
                      ["*"], ["*"], None)
    finally:
        store.close()
    return key


def admin_key_path(settings: Settings) -> Path:
    if settings.auth.admin_key_file is not None:
        return Path(settings.auth.admin_key_file).expanduser()
    return settings.state_path / "admin.key"


DUTY_KEY_FILES = {"system": "admin.key", "security": "security-admin.key", "audit": "auditor.key"}


def duty_key_path(settings: Settings, duty: str) -> Path:
    """Where bootstrap wrote the first key of a duty: beside the admin key."""
    return duty_key_file(admin_key_path(settings), duty)


def duty_key_file(admin_key: Path, duty: str) -> Path:
    return admin_key if duty == "system" else admin_key.with_name(DUTY_KEY_FILES[duty])


def audit_dir(settings: Settings) -> Path:
    if settings.audit.dir is not None:
        return Path(settings.audit.dir).expanduser()
    return settings.state_path / "audit"


def _loosens(current: dict, values: dict) -> bool:
    """Whether ``values`` raise or remove any limit ``current`` sets."""
    return any(current[f] is not None and (values.get(f) is None or values[f] > current[f]) for f in LIMIT_FIELDS)


def _check_name(name: str, what: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_.@" for c in name):
        raise InvalidRequestError(f"{what} name {name!r} must be 1–64 letters, digits or - _ . @", param="name")
