"""Console sessions on both governance databases: timeouts, CSRF tokens, and a sign-out (or a
revoked key) that every gateway sharing the database honours at its next request."""

from __future__ import annotations

import time

import pytest

from seekstack.config import Settings
from seekstack.errors import AuthenticationError
from seekstack.governance import Governance
from seekstack.governance.sessions import Sessions, session_id
from seekstack.governance.store import SqliteIdentityStore


@pytest.fixture(params=["sqlite", "postgres"])
def two_gateways(request, tmp_path):
    """Two gateways' governance over one database (each with its own audit chain)."""
    storage = {"url": request.getfixturevalue("postgres").new_database()} if request.param == "postgres" else {}
    govs = [Governance(Settings(state_dir=tmp_path, storage=storage, audit={"dir": str(tmp_path / f"audit-{n}")}))
            for n in ("a", "b")]
    yield govs
    for gov in govs:
        gov.store.close()
        gov.audit.close()


def until_refused(gov: Governance, token: str, seconds: float = 1.0) -> float:
    """How long until ``gov`` refuses the session (it reads the change feed before each request)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        gov.refresh_if_changed()
        try:
            gov.auth.authenticate_session(gov.sessions.key_of(token)[1])
        except AuthenticationError:
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"the session was still accepted after {seconds} s")


def test_a_sign_out_on_one_gateway_is_refused_by_the_other(two_gateways):
    a, b = two_gateways
    key = a.bootstrap()
    principal = a.auth.authenticate(f"Bearer {key}")
    token = a.sessions.open(principal.key_id)
    b.refresh_if_changed()
    sid, kid = b.sessions.key_of(token)  # b knows the session now (and caches it)
    assert b.auth.authenticate_session(kid).user == "admin"
    assert b.sessions.csrf_ok(sid, a.sessions.csrf(sid))  # one token for the session on every gateway
    a.sessions.end(token)
    assert until_refused(b, token) < 1.0


def test_revoking_the_key_ends_its_sessions_everywhere(two_gateways):
    a, b = two_gateways
    key = a.bootstrap()
    principal = a.auth.authenticate(f"Bearer {key}")
    token = a.sessions.open(principal.key_id)
    b.refresh_if_changed()
    b.auth.authenticate_session(b.sessions.key_of(token)[1])
    a.revoke_key(principal, principal.key_id)
    assert until_refused(b, token) < 1.0


def test_a_session_in_use_on_one_gateway_is_not_idle_on_another(two_gateways):
    """Last uses are written back in batches that the change feed does not announce: a gateway
    that last saw the session long ago asks the database before calling it idle."""
    a, b = two_gateways
    principal = a.auth.authenticate(f"Bearer {a.bootstrap()}")
    token = a.sessions.open(principal.key_id)
    idle = a.settings.console.idle_timeout
    if a.settings.storage.url:  # PostgreSQL: a hears its own writes' NOTIFY too; let it arrive first
        time.sleep(0.6)
    a.refresh_if_changed()
    start = time.time()
    a.sessions.key_of(token, now=start)  # a caches it
    b.refresh_if_changed()
    for step in range(1, 5):  # then the browser's requests land on b, every half idle timeout
        b.sessions.key_of(token, now=start + step * idle / 2)
        b.flush()  # b's periodic batch: last uses (bookkeeping)
    a.refresh_if_changed()
    assert a.sessions.key_of(token, now=start + 2.2 * idle)[0]  # idle to a's eyes, not to the database's
    with pytest.raises(AuthenticationError, match="timed out"):
        a.sessions.key_of(token, now=start + 3.3 * idle)  # unused anywhere for over the idle timeout


def test_idle_and_absolute_timeouts(tmp_path):
    store = SqliteIdentityStore(tmp_path / "seekstack.db")
    store.create_team("t")
    store.create_user("u", "t", "api_consumer")
    store.add_key("k1", "hash", "key", "u", ["*"], ["*"], None)
    sessions = Sessions(store, b"pepper" * 6, idle_timeout=60, max_age=300)
    token = sessions.open("k1")
    start = time.time()
    for minute in range(1, 5):  # used every 50 s: never idle
        assert sessions.key_of(token, now=start + 50 * minute)[1] == "k1"
    sid = sessions.key_of(token, now=start + 250)[0]
    assert store.session(sid)[2] < start + 1  # not written on the request path
    store.touch_sessions(sessions.take_touched())  # the gateway's periodic batch
    assert store.session(sid)[2] >= start + 200 and sessions.take_touched() == {}
    with pytest.raises(AuthenticationError, match="timed out"):
        sessions.key_of(token, now=start + 301)  # past max_age, however busy
    with pytest.raises(AuthenticationError, match="ended"):
        sessions.key_of(token, now=start + 302)  # and it stays ended

    idle = sessions.open("k1")
    with pytest.raises(AuthenticationError, match="timed out"):
        sessions.key_of(idle, now=time.time() + 61)
    assert store.session(session_id(idle))[3] is not None  # ended in the store, for every gateway
    assert store.session(session_id(token))[3] is not None
    sessions.purge(now=start + 302 + 301)  # both ended more than max_age ago
    assert store.session(session_id(idle)) is None and store.session(session_id(token)) is None


def test_the_csrf_token_belongs_to_its_session(tmp_path):
    store = SqliteIdentityStore(tmp_path / "seekstack.db")
    sessions = Sessions(store, b"p" * 32, idle_timeout=60, max_age=300)
    assert sessions.csrf("one") != sessions.csrf("two")
    assert sessions.csrf_ok("one", sessions.csrf("one"))
    assert not sessions.csrf_ok("one", sessions.csrf("two")) and not sessions.csrf_ok("one", None)
    assert Sessions(store, b"q" * 32, 60, 300).csrf("one") != sessions.csrf("one")  # under this server's pepper


def test_an_unknown_token_is_not_signed_in(tmp_path):
    sessions = Sessions(SqliteIdentityStore(tmp_path / "seekstack.db"), b"p" * 32, 60, 300)
    with pytest.raises(AuthenticationError, match="not signed in"):
        sessions.key_of("forged")
