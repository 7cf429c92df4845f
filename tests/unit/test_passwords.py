"""Console passwords: peppered scrypt hashes, and who may set whose (nobody gets a password that
signs in as a role they do not hold)."""

from __future__ import annotations

import pytest

from seekstack.config import Settings
from seekstack.errors import AuthenticationError, InvalidRequestError, NotFoundError, PermissionDeniedError
from seekstack.governance import Governance
from seekstack.governance.passwords import check_password, hash_password

PEPPER = b"p" * 32


def test_a_hash_checks_only_its_password_under_its_pepper():
    stored = hash_password(PEPPER, "correct horse battery staple")
    assert stored.startswith("scrypt$16384$8$1$") and "correct" not in stored
    assert check_password(PEPPER, "correct horse battery staple", stored)
    assert not check_password(PEPPER, "correct horse battery stapl", stored)
    assert not check_password(b"q" * 32, "correct horse battery staple", stored)  # the database alone is not enough
    assert hash_password(PEPPER, "same password here") != hash_password(PEPPER, "same password here")  # salted
    for broken in (None, "", "garbage", "md5$abc", "scrypt$x$8$1$00$00"):
        assert not check_password(PEPPER, "anything", broken)
    assert check_password(PEPPER, "密码也可以是中文的很长的句子", hash_password(PEPPER, "密码也可以是中文的很长的句子"))


@pytest.fixture
def gov(tmp_path):
    g = Governance(Settings(state_dir=tmp_path))
    g.bootstrap()
    yield g
    g.store.close()
    g.audit.close()


def principal(gov: Governance, user: str):
    record, key = gov._mint(user, "test", ["*"], ["*"], None)
    return gov.auth.authenticate(f"Bearer {key}")


def test_who_may_set_whose_password(gov):
    security, admin = principal(gov, "security"), principal(gov, "admin")
    gov.create_user(security, name="alice", team="default", role="api_consumer")
    gov.set_password(security, "alice", "alice's long passphrase")          # users:manage, a role it holds
    alice = gov.auth.authenticate_password("alice", "alice's long passphrase")
    assert (alice.user, alice.role.name, alice.via) == ("alice", "api_consumer", "password")
    with pytest.raises(PermissionDeniedError, match="which can do what role 'security_admin' cannot"):
        gov.set_password(security, "admin", "take over the system duty")   # it would sign in as the admin
    with pytest.raises(PermissionDeniedError, match="its own user's password only"):
        gov.set_password(admin, "alice", "not the admin's business")
    gov.set_password(admin, "admin", "the admin's own passphrase")         # one's own: always
    assert gov.auth.authenticate_password("admin", "the admin's own passphrase").role.name == "admin"
    with pytest.raises(InvalidRequestError, match="12 to 256"):
        gov.set_password(admin, "admin", "short")
    with pytest.raises(NotFoundError):
        gov.set_password(security, "nobody", "a long enough passphrase")


def test_a_wrong_password_unknown_user_and_no_password_answer_alike(gov):
    security = principal(gov, "security")
    gov.create_user(security, name="bob", team="default", role="api_consumer")
    messages = set()
    for user, password in (("bob", "never set for bob"), ("nobody", "whatever it is"), ("security", "")):
        with pytest.raises(AuthenticationError) as refused:
            gov.auth.authenticate_password(user, password)
        messages.add(refused.value.message)
    assert messages == {"invalid user name or password"}


def test_a_password_session_has_its_own_key_and_sign_out_revokes_it(gov):
    security = principal(gov, "security")
    gov.create_user(security, name="carol", team="default", role="api_consumer")
    gov.set_password(security, "carol", "carol's long passphrase")
    carol = gov.auth.authenticate_password("carol", "carol's long passphrase")
    kid = gov.mint_session_key(carol)
    token = gov.sessions.open(kid)
    record = gov.store.key(kid)
    assert record.user == "carol" and record.role == "api_consumer" and record.expires is not None
    assert gov.auth.authenticate_session(gov.sessions.key_of(token)[1]).user == "carol"
    gov.end_session(token, kid)
    assert gov.store.key(kid).revoked is not None
    with pytest.raises(AuthenticationError):
        gov.auth.authenticate_session(kid)


def test_a_new_password_ends_the_sessions_the_old_one_opened_but_the_one_it_is_set_from(gov):
    """Changing one's password from the console keeps that session and ends the others (a
    stolen session does not outlive the change); a reset by the security admin ends them all."""
    security = principal(gov, "security")
    gov.create_user(security, name="dave", team="default", role="api_consumer")
    gov.set_password(security, "dave", "dave's first passphrase")
    sessions = []
    for _ in range(3):  # signed in three times: a laptop, a phone, and someone who stole the password
        dave = gov.auth.authenticate_password("dave", "dave's first passphrase")
        kid = gov.mint_session_key(dave)
        sessions.append((kid, gov.sessions.open(kid)))
    own_key = gov._mint("dave", "scripts", ["*"], ["*"], None)[0].id  # an API key: not a session, stays
    here = gov.auth.authenticate_session(sessions[0][0])
    assert gov.set_password(here, "dave", "dave's second passphrase")["sessions_ended"] == 2
    assert gov.auth.authenticate_session(sessions[0][0]).user == "dave"
    for kid, _ in sessions[1:]:
        with pytest.raises(AuthenticationError):
            gov.auth.authenticate_session(kid)
    assert gov.set_password(security, "dave", "reset by security")["sessions_ended"] == 1
    with pytest.raises(AuthenticationError):
        gov.auth.authenticate_session(sessions[0][0])
    assert gov.store.key(own_key).revoked is None


def test_failed_password_sign_ins_lock_the_user_name_until_they_age_out(tmp_path, monkeypatch):
    """Past console.password_failures failures within the window, a user name is refused (429) —
    the right password too, and a name nobody has alike — until the oldest failures age out.
    Another name is not touched, and keys still work."""
    import asyncio
    import time

    from seekstack.errors import RateLimitError

    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])
    gov = Governance(Settings(state_dir=tmp_path, console={"password_failures": 3, "password_window": 120}))
    gov.bootstrap()
    security = principal(gov, "security")
    for name in ("erin", "frank"):
        gov.create_user(security, name=name, team="default", role="api_consumer")
        gov.set_password(security, name, f"{name}'s long passphrase")

    async def attempt(name: str, password: str):
        try:
            return (await gov.sign_in_with_password(name, password)).user
        except (AuthenticationError, RateLimitError) as exc:
            return exc

    async def main():
        tried = [await attempt("erin", "a wrong guess, again") for _ in range(3)]
        assert all(isinstance(e, AuthenticationError) for e in tried)
        locked = await attempt("erin", "erin's long passphrase")
        assert isinstance(locked, RateLimitError) and locked.status == 429 and 1 <= locked.retry_after <= 120
        assert "failed password sign-ins" in locked.message and locked.scope == "user"
        assert await attempt("frank", "frank's long passphrase") == "frank"  # another name: untouched
        for _ in range(3):
            await attempt("nobody-here", "guessing")
        nobody = await attempt("nobody-here", "guessing")
        assert isinstance(nobody, RateLimitError) and nobody.message == locked.message  # says nothing of who exists
        now[0] += 181  # the failures have aged out of the window
        assert await attempt("erin", "erin's long passphrase") == "erin"

    asyncio.run(main())
    gov.store.close()
    gov.audit.close()
