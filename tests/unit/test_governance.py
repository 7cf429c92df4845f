"""Governance without a server: key format and hashing, bootstrap, tenant rules, policy, config checks."""

from __future__ import annotations

import asyncio
import shutil
import stat

import pytest

from seekstack.config import Settings, check_settings
from seekstack.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from seekstack.governance import Governance
from seekstack.governance.keys import hash_key, key_id, matches, new_key
from seekstack.governance.policy import BUILTIN_ROLES, ROUTES, Policy, route_permission


@pytest.fixture(params=["sqlite", "postgres"])
def gov(request, tmp_path):
    """Governance on each governance database: SQLite (the default) and a real PostgreSQL."""
    storage = {"url": request.getfixturevalue("postgres").new_database()} if request.param == "postgres" else {}
    g = Governance(Settings(state_dir=tmp_path, storage=storage,
                            roles={"keymaster": {"permissions": ["keys:manage", "users:manage"]}}))
    yield g
    asyncio.run(g.aclose())


def test_key_format_and_hash():
    kid, key = new_key()
    assert key.startswith("sk-") and len(key) == 47 and key_id(key) == kid
    assert key_id("sk-short") is None and key_id("pk-" + key[3:]) is None
    pepper = b"p" * 32
    h = hash_key(pepper, key)
    other = key[:-1] + ("y" if key.endswith("x") else "x")  # one character off (a key may end in "x" itself)
    assert matches(pepper, key, h) and not matches(pepper, other, h) and not matches(b"q" * 32, key, h)


def test_bootstrap_creates_one_admin_key_once(gov, tmp_path):
    key = gov.bootstrap()
    assert key and gov.bootstrap() is None
    path = tmp_path / "admin.key"
    assert path.read_text().strip() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    principal = gov.auth.authenticate(f"Bearer {key}")
    assert principal.role.name == "admin" and principal.team == "default" and principal.is_global


def test_authenticate_refuses_bad_headers(gov):
    gov.bootstrap()
    for header in (None, "", "Bearer", "Token abc", "Bearer sk-x", "Bearer " + "sk-" + "a" * 44):
        with pytest.raises(AuthenticationError):
            gov.auth.authenticate(header)


def test_team_scoped_caller_is_confined_to_its_team(gov, tmp_path):
    gov.bootstrap()
    admin = gov.auth.authenticate("Bearer " + (tmp_path / "security-admin.key").read_text().strip())
    gov.create_team(admin, "a")
    gov.create_team(admin, "b")
    gov.create_user(admin, name="amgr", team="a", role="keymaster")
    gov.create_user(admin, name="bob", team="b", role="api_consumer")
    _, bkey = gov.create_key(admin, user="bob", name="", models=[], endpoints=[], expires_in_days=None)
    _, akey = gov.create_key(admin, user="amgr", name="", models=[], endpoints=[], expires_in_days=None)
    amgr = gov.auth.authenticate(f"Bearer {akey}")
    assert {k.team for k in gov.list_keys(amgr)} == {"a"}
    with pytest.raises(NotFoundError):
        gov.revoke_key(amgr, key_id(bkey))
    with pytest.raises(NotFoundError):
        gov.create_key(amgr, user="bob", name="", models=[], endpoints=[], expires_in_days=None)
    with pytest.raises(PermissionDeniedError):
        gov.create_user(amgr, name="evil", team="a", role="security_admin")
    with pytest.raises(PermissionDeniedError):
        gov.create_team(amgr, "c")
    gov.revoke_key(admin, key_id(bkey))
    with pytest.raises(AuthenticationError):
        gov.auth.authenticate(f"Bearer {bkey}")


def test_every_app_route_has_a_permission(tmp_path):
    """Deny by default must not hide a route: every route the app serves is in the policy (or a probe)."""
    from seekstack.gateway.app import build_app
    from seekstack.governance.policy import OPEN_PREFIXES, OPEN_ROUTES

    app = build_app(Settings(state_dir=tmp_path))
    served = []
    for route in app.routes:  # FastAPI ≥ 0.16x keeps included routers whole: walk into them
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        served += [(method, r.path) for r in contexts for method in (getattr(r, "methods", ()) or ()) if method != "HEAD"]
    assert ("GET", "/admin/v1/keys") in served and ("GET", "/console/keys") in served  # the walk found the routers
    for method, path in served:
        assert (method, path) in OPEN_ROUTES or path.startswith(OPEN_PREFIXES) or route_permission(method, path), \
            (method, path)
    assert len(ROUTES) >= 14


def test_roles_are_separated():
    from seekstack.governance.policy import DUTIES

    readers = [name for name, role in BUILTIN_ROLES.items() if role.grants("audit:read")]
    assert readers == ["auditor"]
    assert not BUILTIN_ROLES["admin"].grants("audit:read") and not BUILTIN_ROLES["admin"].grants("keys:manage")
    assert not BUILTIN_ROLES["security_admin"].grants("config:manage")
    for role in BUILTIN_ROLES.values():  # no built-in role holds two duties
        assert sum(bool(role.granted & duty) for duty in DUTIES.values()) <= 1, role.name
    custom = Policy.with_custom({"r1_only": {"permissions": ["inference:chat"], "resources": ["deepseek-r1*"]}})
    role = custom.role("r1_only")
    assert role.grants("inference:chat", "deepseek-r1-distill") and not role.grants("inference:chat", "qwen")


def test_config_check_guards_auth_and_roles():
    assert check_settings(Settings(auth={"enabled": False})) == []  # loopback: allowed
    problems = check_settings(Settings(auth={"enabled": False}, server={"host": "0.0.0.0"}))
    assert any("auth.enabled" in p and "loopback" in p for p in problems)
    problems = check_settings(Settings(roles={"x": {"permissions": ["inference:read"]}, "admin": {"permissions": []}}))
    assert any("roles.x.permissions" in p for p in problems) and any("roles.admin" in p for p in problems)


def test_meter_runs_deferred_accounting_once_and_a_failure_does_not_stop_the_rest(caplog):
    from seekstack.governance.meter import Meter

    meter, ran = Meter(), []

    async def counted_apart():  # a step may be a coroutine (a long prompt's PII, scanned in a worker process)
        ran.append("fourth")

    meter.after += [lambda: ran.append("first"), lambda: 1 / 0, lambda: ran.append("third"), counted_apart]
    asyncio.run(meter.run_after())
    asyncio.run(meter.run_after())  # nothing left: each step runs once
    assert ran == ["first", "third", "fourth"]
    assert "accounting after the answer failed (ZeroDivisionError in " in caplog.text


def test_an_older_state_directory_gets_the_duties_it_lacks(tmp_path):
    """Bootstrapped before the duties were split: an admin and people, but no security admin or auditor —
    and nobody could give those roles now. The next start makes them, with their key files."""
    first = Governance(Settings(state_dir=tmp_path))
    first.store.create_team("default")
    first.store.create_user("admin", "default", "admin")
    first._mint("admin", "old bootstrap key", ["*"], ["*"], None)
    first.store.create_user("security", "default", "api_consumer")  # the name is taken already
    asyncio.run(first.aclose())
    again = Governance(Settings(state_dir=tmp_path))
    try:
        assert again.bootstrap() is None  # not a new install: no admin key is shown
        roles = {u["name"]: u["role"] for u in again.store.users()}
        assert roles["security_"] == "security_admin" and roles["auditor"] == "auditor"
        for name in ("security-admin.key", "auditor.key"):
            key = (tmp_path / name).read_text().strip()
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
            assert again.auth.authenticate(f"Bearer {key}").role.name in ("security_admin", "auditor")
        again.bootstrap()  # once only
        assert sum(1 for u in again.store.users() if u["role"] == "security_admin") == 1
    finally:
        asyncio.run(again.aclose())


def test_usage_is_counted_from_the_audit_chain_and_survives_a_kill(gov, tmp_path):
    """A gateway killed before its periodic flush loses no usage its audit log holds: the next
    start counts it from where the last count stopped, and nothing is counted twice."""
    settings = Settings(state_dir=tmp_path / "gateway", storage=gov.settings.storage.model_dump())
    settings.state_path.mkdir()
    shutil.copy2(gov.settings.state_path / "pepper.key", settings.state_path)  # another gateway on its database
    first = Governance(settings)

    def response(key_id: str, model: str, status: int, prompt: int, completion: int) -> dict:
        return {"event": "response", "key_id": key_id, "user": "admin", "team": "default", "model": model,
                "status": status, "prompt_tokens": prompt, "completion_tokens": completion, "reasoning_tokens": 0}

    async def serve(g, records):
        for record in records:
            await g.audit.append({"event": "request", "key_id": record["key_id"], "decision": "allow"}, alone=True)
            g.audit.append_nowait(record)
        g.audit.flush()

    assert first.store.usage() == []  # a new chain counts from its start
    asyncio.run(serve(first, [response("k1", "m", 200, 10, 5), response("k1", "m", 200, 7, 3),
                            response("k1", "m", 429, 0, 0),      # refused before the engine: not usage
                            response("k2", "other", 500, 4, 1)]))  # failed, but the engine ran: usage
    first.count_usage()
    usage = {u["model"]: u for u in first.store.usage()}
    assert (usage["m"]["requests"], usage["m"]["prompt_tokens"], usage["m"]["completion_tokens"]) == (2, 17, 8)
    assert usage["other"]["requests"] == 1
    first.count_usage()  # again: nothing new, nothing twice
    assert {u["model"]: u["requests"] for u in first.store.usage()} == {"m": 2, "other": 1}

    asyncio.run(serve(first, [response("k1", "m", 200, 1, 1)] * 3))  # served, committed, never counted …
    first.audit.close()  # … and the gateway dies here: no flush, no count
    first.store.close()
    again = Governance(settings)  # the next start on the same state
    try:
        again.count_usage()
        assert {u["model"]: u["requests"] for u in again.store.usage()} == {"m": 5, "other": 1}
    finally:
        again.store.close()
        again.audit.close()
