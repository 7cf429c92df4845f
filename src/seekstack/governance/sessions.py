"""Console sign-in sessions: a browser's stand-in for its API key.

Signing in proves an API key once (through the guard, like any request); the session then
carries that key's id, so a session can do exactly what its key can and ends when the key is
revoked or expires. The browser holds a random token in an HttpOnly cookie; the governance
database holds only the token's SHA-256, shared by every gateway — a sign-out on one gateway
is refused on every other one at its next request (the database's change feed drops their
caches, as for keys).

- **Idle timeout**: a session unused for ``console.idle_timeout`` seconds ends. Its last use is
  noted at most every ``TOUCH_EVERY`` seconds (or a quarter of the idle timeout, when shorter)
  and written back with the gateway's periodic batch (keys' last use, usage), off the request
  path, as bookkeeping the change feed does not announce. So a gateway that finds a session
  idle reads its last use from the database before ending it: it may have been used elsewhere.
- **Absolute timeout**: ``console.max_age`` seconds after sign-in, whatever the use.
- **CSRF**: every write a session makes must carry the session's CSRF token
  (:meth:`Sessions.csrf`), an HMAC of the session id under the server's pepper: nothing more to
  store, and another site cannot read it (the cookie is ``SameSite=Strict`` as well).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..errors import AuthenticationError
from .store import IdentityStore

COOKIE = "seekstack_session"
TOUCH_EVERY = 60.0


@dataclass
class Session:
    id: str            # the token's hash
    key_id: str
    created: float
    last_seen: float   # its last use seen here
    ended: float | None
    stored: float = 0.0  # the last use the database has


class Sessions:
    def __init__(self, store: IdentityStore, pepper: bytes, idle_timeout: float, max_age: float):
        self.store = store
        self.pepper = pepper
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.touch_every = min(TOUCH_EVERY, idle_timeout / 4)
        self._cache: dict[str, Session] = {}
        self._touched: dict[str, float] = {}  # session id → last use, for the next batched write

    def open(self, kid: str) -> str:
        """A new session for key ``kid``; returns its token (for the cookie, never stored)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        self.store.add_session(session_id(token), kid, now)
        return token

    def key_of(self, token: str, now: float | None = None) -> tuple[str, str]:
        """(session id, key id) of a live session, or AuthenticationError."""
        now = time.time() if now is None else now
        sid = session_id(token)
        session = self._cache.get(sid)
        if self._to_load(session, now):
            session = self._load(sid, session)
        if session.ended is not None:
            raise AuthenticationError("this session has ended", fix="sign in again")
        if now - session.created > self.max_age or now - session.last_seen > self.idle_timeout:
            self.end(token, now)
            raise AuthenticationError("this session has timed out", fix="sign in again")
        session.last_seen = now
        if now - session.stored > self.touch_every:
            session.stored = now
            self._touched[sid] = now
        return sid, session.key_id

    def _to_load(self, session: Session | None, now: float) -> bool:
        return session is None or now - session.last_seen > self.idle_timeout  # idle here: used elsewhere since?

    def cached_key(self, token: str) -> str | None:
        """The key id of the session of ``token`` if :meth:`key_of` can answer from the cache."""
        session = self._cache.get(session_id(token))
        return None if self._to_load(session, time.time()) else session.key_id

    def look_up(self, token: str) -> str | None:
        """Read the session of ``token`` into the cache if :meth:`key_of` would (a database
        statement: call it from a worker thread); its key's id, or None if it is not signed in."""
        sid = session_id(token)
        session = self._cache.get(sid)
        if self._to_load(session, time.time()):
            try:
                session = self._load(sid, session)
            except AuthenticationError:
                return None  # key_of says so
        return session.key_id

    def _load(self, sid: str, cached: Session | None) -> Session:
        """The session as the database has it — with its last use on any gateway (last uses are
        bookkeeping, which does not reach the other gateways' caches) — or not signed in."""
        row = self.store.session(sid)
        if row is None:
            raise AuthenticationError("not signed in", fix="sign in at /console/signin")
        session = self._cache[sid] = Session(sid, *row)
        session.stored = session.last_seen
        if cached is not None:
            session.last_seen = max(session.last_seen, cached.last_seen)
        return session

    def take_touched(self) -> dict[str, float]:
        """The sessions' last uses noted since the last call (for the batched write)."""
        touched, self._touched = self._touched, {}
        return touched

    def note_touched(self, touched: dict[str, float]) -> None:
        """Put back last uses a failed write did not store."""
        for sid, when in touched.items():
            self._touched[sid] = max(when, self._touched.get(sid, 0.0))

    def end(self, token: str, now: float | None = None) -> None:
        sid = session_id(token)
        self.store.end_session(sid, time.time() if now is None else now)
        self._cache.pop(sid, None)

    def csrf(self, sid: str) -> str:
        return hmac.new(self.pepper, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, sid: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf(sid), token)

    def forget_all(self) -> None:
        """Another gateway changed the database (perhaps ended a session): read sessions afresh."""
        self._cache.clear()

    def purge(self, now: float | None = None) -> None:
        """Drop sessions that can no longer be used (daily, with retention)."""
        now = time.time() if now is None else now
        self.store.purge_sessions(now - self.max_age)  # last seen before that: older than max_age


def session_id(token: str) -> str:
    """The id a session is stored under: the SHA-256 of its token."""
    return hashlib.sha256(token.encode()).hexdigest()
