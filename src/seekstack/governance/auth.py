"""Authenticate a bearer key into a :class:`Principal`, and decide what it may do.

Keys are read through a small cache so the request path does one dict lookup and one HMAC;
a revoke takes effect at once, in this process and (through the database's change counter,
checked on every request) in other gateways sharing the database. ``last_used`` is kept in memory and
written back in batches (:meth:`Authenticator.flush`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..errors import AuthenticationError, PermissionDeniedError
from .keys import key_id, matches
from .passwords import check_password
from .policy import BUILTIN_ROLES, Policy, Role
from .store import IdentityStore, KeyRecord


@dataclass(frozen=True)
class Principal:
    key_id: str
    user: str
    team: str
    role: Role
    models: tuple[str, ...] = ("*",)
    endpoints: tuple[str, ...] = ("*",)
    via: str = "key"  # how it was proven: key (also a console session's), or password (signing in only)

    @property
    def is_global(self) -> bool:
        return self.role.scope == "global"

    def require(self, permission: str, method: str, path: str) -> None:
        if not any(fnmatchcase(path, e) for e in self.endpoints):
            raise PermissionDeniedError(f"this key may not call {method} {path}",
                                        fix="use a key whose endpoint allow-list covers it")
        if not self.role.grants(permission):
            raise PermissionDeniedError(f"role {self.role.name!r} lacks permission {permission!r} for {method} {path}",
                                        fix="use a key whose role has it")

    def may_use_model(self, model: str) -> bool:
        return any(fnmatchcase(model, m) for m in self.models) and self.role.covers(model)

    def require_model(self, model: str) -> None:
        if not self.may_use_model(model):
            raise PermissionDeniedError(f"this key may not use model {model!r}",
                                        fix="use a key whose model allow-list and role cover it", param="model")

    def sees_team(self, team: str) -> bool:
        return self.is_global or team == self.team


ANONYMOUS = Principal("anonymous", "anonymous", "default", BUILTIN_ROLES["admin"])


class Authenticator:
    def __init__(self, store: IdentityStore, pepper: bytes, policy: Policy):
        self.store = store
        self.pepper = pepper
        self.policy = policy
        self._cache: dict[str, KeyRecord] = {}  # known keys only: unknown ids are never cached
        self._last_used: dict[str, float] = {}

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthenticationError("no API key was sent", fix="send the header `Authorization: Bearer sk-…`")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationError("the Authorization header must be `Bearer <key>`",
                                      fix="send the header `Authorization: Bearer sk-…`")
        kid = key_id(key)
        record = self._record(kid) if kid else None
        # One message for unknown, wrong-secret, revoked and expired: nothing to probe.
        if record is None or not matches(self.pepper, key, record.hash):
            raise AuthenticationError("invalid API key", fix="check the key, or ask an administrator for a new one")
        return self._principal(record)

    def authenticate_session(self, kid: str) -> Principal:
        """The principal of a key already proven (a console session carries its key's id, not
        the key): the same checks as :meth:`authenticate` but the secret's, so a revoked or
        expired key, or a role that shrank, ends its sessions too."""
        record = self._record(kid)
        if record is None:
            raise AuthenticationError("invalid API key", fix="sign in again")
        return self._principal(record)

    def authenticate_password(self, name: str, password: str) -> Principal:
        """A user proven by the console password (scrypt: call it from a worker thread). Unknown
        user, no password set and a wrong one answer alike, in the same time."""
        user = self.store.user(name) if name else None
        stored = self.store.password(name) if user is not None else None
        if not check_password(self.pepper, password, stored) or user is None:
            raise AuthenticationError("invalid user name or password",
                                      fix="check them, or ask your security administrator to set a password")
        role = self.policy.role(user["role"])
        if role is None:
            raise PermissionDeniedError(f"the user's role {user['role']!r} is not defined",
                                        fix="define the role in `roles:` or give the user a built-in role")
        return Principal(f"password:{name}", name, user["team"], role, via="password")

    def _principal(self, record: KeyRecord) -> Principal:
        now = time.time()
        if not record.live(now):
            raise AuthenticationError("invalid API key (revoked or expired)", fix="ask an administrator for a new key")
        role = self.policy.role(record.role)
        if role is None:
            raise PermissionDeniedError(f"the key's role {record.role!r} is not defined",
                                        fix="define the role in `roles:` or give the user a built-in role")
        if record.role != record.user_role:  # a key of its own role: never more than its user's (roles change)
            user_role = self.policy.role(record.user_role)
            if user_role is None or not user_role.holds(role):
                raise PermissionDeniedError(f"the key's role {record.role!r} now exceeds its user's role "
                                            f"{record.user_role!r}", fix="mint a new key for the user")
        self._last_used[record.id] = now
        return Principal(record.id, record.user, record.team, role, record.models, record.endpoints)

    def uncached(self, authorization: str | None) -> str | None:
        """The id of the key in ``authorization`` if it is not in the cache (to be looked up
        with :meth:`look_up` before :meth:`authenticate`, off the event loop)."""
        if not authorization or authorization[:7].lower() != "bearer ":
            return None
        kid = key_id(authorization[7:].strip())
        return kid if kid and not self.cached(kid) else None

    def cached(self, kid: str) -> bool:
        return kid in self._cache

    def look_up(self, kid: str) -> None:
        """Read a key into the cache (a database statement: call it from a worker thread)."""
        self._record(kid)

    def _record(self, kid: str) -> KeyRecord | None:
        record = self._cache.get(kid)
        if record is None:
            record = self.store.key(kid)
            if record is not None:
                self._cache[kid] = record
        return record

    def forget(self, kid: str) -> None:
        self._cache.pop(kid, None)

    def forget_all(self) -> None:
        self._cache.clear()

    def take_last_used(self) -> dict[str, float]:
        """The keys' last-used times gathered since the last call (for a batched write)."""
        used, self._last_used = self._last_used, {}
        return used

    def note_used(self, kid: str, when: float) -> None:
        self._last_used[kid] = max(when, self._last_used.get(kid, 0.0))
