"""Keys, roles and tenants through the real gateway: the authorization matrix, isolation, key lifecycle."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time

import httpx
import openai
import pytest
import yaml

from seekstack.governance.policy import BUILTIN_ROLES, ROUTES

from conftest import (EMBEDDED, EMBEDDER, RERANKER, SEEKSTACK, SMALL_CTX, TEAM_AUDITOR, TEAM_KEYMASTER, Server, as_key,
                      auditor_key, free_port, keys_for_every_role, make_key, make_user, unique)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    """This module's gateway, once on each governance database: SQLite in its state directory,
    and a real PostgreSQL."""
    storage = {"url": request.getfixturevalue("postgres").new_database()} if request.param == "postgres" else {}
    srv = Server(tmp_path_factory.mktemp(f"governed-{request.param}"), {
        "models": [EMBEDDED, SMALL_CTX, EMBEDDER, RERANKER], "storage": storage,
        "roles": {"team_keymaster": TEAM_KEYMASTER, "team_auditor": TEAM_AUDITOR},
        "pii": {"teams": {"pii_mask": "mask", "pii_token": "tokenize", "pii_off": "off"}}}).start()
    srv.storage_url = storage.get("url")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def role_keys(server):
    return keys_for_every_role(server)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=60)

HELLO = [{"role": "user", "content": "Hi"}]
def request_for(method: str, path: str) -> tuple[str, str, dict | None]:
    """A harmless, valid request for each route of the policy."""
    bodies = {
        "/v1/chat/completions": {"model": "smollm2-135m", "messages": HELLO, "max_tokens": 1},
        "/v1/completions": {"model": "smollm2-135m", "prompt": "Hi", "max_tokens": 1},
        "/v1/embeddings": {"model": "smollm2-135m-embed", "input": "Hi"},
        "/v1/rerank": {"model": "smollm2-135m-rerank", "query": "Hi", "documents": ["Hello"]},
        "/api/chat": {"model": "smollm2-135m", "messages": HELLO, "stream": False, "options": {"num_predict": 1}},
        "/api/generate": {"model": "smollm2-135m", "prompt": "Hi", "stream": False, "options": {"num_predict": 1}},
        "/api/embed": {"model": "smollm2-135m-embed", "input": "Hi"},
        "/api/show": {"model": "smollm2-135m"},
        "/admin/v1/keys": {"name": "matrix"},
        "/admin/v1/users": {"name": unique("m"), "role": "api_consumer"},
        "/admin/v1/teams": {"name": unique("t")},
        "/admin/v1/users/{id}/password": {"password": "a long enough passphrase"},  # an unknown user: 404
        "/admin/v1/limits": {"scope": "team", "name": unique("nolimits")},  # an unknown team: 404 once allowed
        "/admin/v1/models/{id}/scale": {"replicas": 1},
        "/admin/v1/autoscaler/{id}": {"max_replicas": 2},
        "/admin/v1/rollouts": {"model": "nosuchmodel", "to": "2"},  # an unknown model: 404 once allowed
    }
    return method, path.replace("{id}", "nosuchkey000"), bodies.get(path) if method in ("POST", "PUT") else None


def test_authorization_matrix_matches_the_policy(server, role_keys):
    """Every built-in role × every endpoint: allowed ones are served, the rest get 403."""
    for role, key in role_keys.items():
        with as_key(server, key) as c:
            for (method, path), permission in ROUTES.items():
                method, url, body = request_for(method, path)
                r = c.request(method, url, json=body)
                allowed = BUILTIN_ROLES[role].grants(permission)
                if allowed:
                    assert r.status_code in (200, 201, 404 if ("{id}" in path or method == "PUT" or path == "/admin/v1/rollouts") else 200), \
                        (role, method, path, r.text)
                else:
                    assert r.status_code == 403, (role, method, path, r.status_code)
                    if method == "GET" and path.startswith("/console"):  # a page: refused with a page
                        assert r.headers["content-type"].startswith("text/html"), (role, path)
                    else:
                        assert r.json()["error"]["code"] == "permission_denied"


def test_requests_without_a_valid_key_get_401(server, client):
    for headers in ({}, {"Authorization": "Bearer sk-nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer sk-" + "a" * 44}):
        r = httpx.post(server.url + "/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO},
                       headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"].startswith("Bearer")
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="smollm2-135m", messages=HELLO, max_tokens=1)
    # probes stay open; unknown routes are not served even to a valid key
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert httpx.get(server.url + "/admin/v1/replicas").status_code == 401
    assert server.http.get("/v1/nothing-here").status_code == 404


def test_revoked_key_is_refused_at_once(server):
    user = make_user(server, "api_consumer")
    key = make_key(server, user)
    with as_key(server, key) as c:
        assert c.get("/v1/models").status_code == 200
        kid = c.get("/admin/v1/whoami").json()["key_id"]
        assert server.security.delete(f"/admin/v1/keys/{kid}").status_code == 200
        r = c.get("/v1/models")
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    listed = {k["id"]: k for k in server.security.get("/admin/v1/keys").json()["data"]}
    assert listed[kid]["revoked"] is not None


def test_expired_key_is_refused(server):
    key = make_key(server, make_user(server, "api_consumer"), expires_in_days=1.5 / 86400)
    with as_key(server, key) as c:
        assert c.get("/v1/models").status_code == 200
        time.sleep(2)
        assert c.get("/v1/models").status_code == 401


def test_model_and_endpoint_allow_lists(server):
    user = make_user(server, "api_consumer")
    key = make_key(server, user, models=["smollm2-small*"], endpoints=["/v1/chat/*", "/v1/models"])
    with as_key(server, key) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["smollm2-small-ctx"]
        ok = c.post("/v1/chat/completions", json={"model": "smollm2-small-ctx", "messages": HELLO, "max_tokens": 1})
        assert ok.status_code == 200
        r = c.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO, "max_tokens": 1})
        assert r.status_code == 403 and r.json()["error"]["param"] == "model"
        r = c.post("/v1/completions", json={"model": "smollm2-small-ctx", "prompt": "x", "max_tokens": 1})
        assert r.status_code == 403
        # an unknown model's 404 lists only what this key may use
        r = c.post("/v1/chat/completions", json={"model": "nope", "messages": HELLO})
        assert r.status_code == 404 and "smollm2-135m," not in r.json()["error"]["message"]


def test_tenants_cannot_reach_each_other(server):
    team_a, team_b = unique("teamA"), unique("teamB")
    for team in (team_a, team_b):
        assert server.security.post("/admin/v1/teams", json={"name": team}).status_code == 201
    a_mgr = make_key(server, make_user(server, "team_keymaster", team_a))
    b_user = make_user(server, "api_consumer", team_b)
    b_key = make_key(server, b_user)
    with as_key(server, b_key) as b:
        b_kid = b.get("/admin/v1/whoami").json()["key_id"]
    with as_key(server, a_mgr) as a:
        mine = a.get("/admin/v1/keys").json()["data"]
        assert mine and {k["team"] for k in mine} == {team_a}
        assert {u["team"] for u in a.get("/admin/v1/users").json()["data"]} == {team_a}
        assert [t["name"] for t in a.get("/admin/v1/teams").json()["data"]] == [team_a]
        # B's objects look exactly like missing ones
        gone = a.delete("/admin/v1/keys/nosuchkey000")
        theirs = a.delete(f"/admin/v1/keys/{b_kid}")
        assert theirs.status_code == gone.status_code == 404
        assert theirs.json()["error"]["message"].replace(b_kid, "X") == gone.json()["error"]["message"].replace("nosuchkey000", "X")
        assert a.post("/admin/v1/keys", json={"user": b_user}).status_code == 404
        assert a.post("/admin/v1/users", json={"name": unique("x"), "role": "api_consumer", "team": team_b}).status_code == 404
        # no escalation: a team role cannot make a global admin or a team
        assert a.post("/admin/v1/users", json={"name": unique("x"), "role": "admin"}).status_code == 403
        assert a.post("/admin/v1/teams", json={"name": unique("t")}).status_code == 403
    with as_key(server, b_key) as b:
        assert b.get("/v1/models").status_code == 200  # B's key still works
        assert b.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO, "max_tokens": 1}).status_code == 200
    # usage: A's analyst sees A's rows only, never B's
    a_analyst = make_key(server, make_user(server, "data_analyst", team_a))
    with as_key(server, a_analyst) as a:
        assert a.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO, "max_tokens": 1}).status_code == 200
        rows = a.get("/admin/v1/usage").json()["data"]
        assert rows and {r["team"] for r in rows} == {team_a}
    assert team_b in {r["team"] for r in server.http.get("/admin/v1/usage").json()["data"]}  # B's usage exists
    for since in ("last week", "20261101"):  # the table's days are YYYY-MM-DD: anything else would match wrongly
        bad = server.http.get("/admin/v1/usage", params={"since": since})
        assert bad.status_code == 400 and "YYYY-MM-DD" in bad.json()["error"]["message"]
    assert server.http.get("/admin/v1/usage", params={"since": "2026-11-01"}).status_code == 200


def test_a_team_scoped_auditor_reads_only_its_own_teams_audit_records(server):
    team, started = unique("teamAudit"), time.time() - 1
    assert server.security.post("/admin/v1/teams", json={"name": team}).status_code == 201
    with as_key(server, make_key(server, make_user(server, "api_consumer", team))) as member:
        ours = member.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO, "max_tokens": 1})
    theirs = server.http.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO, "max_tokens": 1})
    assert ours.status_code == theirs.status_code == 200
    with as_key(server, auditor_key(server, "team_auditor", team)) as auditor:
        for params in ({"since": started}, {"since": started, "team": "default"}):  # asking for another team changes nothing
            records = auditor.get("/admin/v1/audit", params=params).json()["data"]
            ids = {r.get("request_id") for r in records}
            assert ours.headers["x-request-id"] in ids and theirs.headers["x-request-id"] not in ids
            assert {r["team"] for r in records} == {team}
        assert auditor.get("/admin/v1/audit", params={"limit": 0}).status_code == 422
    with as_key(server, auditor_key(server)) as everyone:  # the global auditor sees both
        ids = {r.get("request_id") for r in everyone.get("/admin/v1/audit", params={"since": started}).json()["data"]}
        assert {ours.headers["x-request-id"], theirs.headers["x-request-id"]} <= ids


def test_secrets_at_rest(server):
    state = server.key_path.parent
    for name in ("admin.key", "pepper.key", *(() if server.storage_url else ("seekstack.db",))):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    secret = server.key[len("sk-") + 12:]
    if server.storage_url is None:
        db_bytes = b"".join(p.read_bytes() for p in state.glob("seekstack.db*"))
        with sqlite3.connect(state / "seekstack.db") as db:
            hashes = [h for (h,) in db.execute("SELECT hash FROM keys")]
    else:  # every column of every key row, as text
        import psycopg

        with psycopg.connect(server.storage_url) as conn:
            db_bytes = "".join(str(row) for row in conn.execute("SELECT * FROM keys")).encode()
            hashes = [h for (h,) in conn.execute("SELECT hash FROM keys")]
    assert server.key.encode() not in db_bytes and secret.encode() not in db_bytes
    assert hashes and all(len(h) == 64 for h in hashes)



def test_a_gateway_without_this_databases_pepper_is_refused_at_start(server, tmp_path):
    """Another gateway on this governance database — PostgreSQL, or on SQLite a copy of the
    database restored without its pepper — whose state_dir lacks the pepper, or has another one,
    is refused at start in one line with the fix: it would have answered every key with 401.
    With a copy of the pepper it takes the keys made through the first gateway."""
    state = tmp_path / "state"
    config = {"state_dir": str(state), "audit": {"dir": str(tmp_path / "audit")},
              "models": [{"name": "far", "engine": {"kind": "openai", "url": "http://127.0.0.1:9"}}]}
    state.mkdir(mode=0o700)
    if server.storage_url:
        config["storage"] = {"url": server.storage_url}
    else:
        with sqlite3.connect(server.key_path.parent / "seekstack.db") as live, \
                sqlite3.connect(state / "seekstack.db") as copy:
            live.backup(copy)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    gateway = [*SEEKSTACK, "gateway", "--config", str(path), "--port", str(port)]

    missing = subprocess.run(gateway, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr, missing.stderr
    assert f"{state / 'pepper.key'} is missing, and the governance database already holds keys" in missing.stderr
    assert not (state / "pepper.key").exists()  # no new pepper that fits no key
    (state / "pepper.key").write_bytes(os.urandom(32))
    other = subprocess.run(gateway, capture_output=True, text=True, timeout=60)
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "is not the pepper the governance database's keys were hashed with" in other.stderr
    assert "fix: copy pepper.key (mode 0600) into this state_dir" in other.stderr

    shutil.copy2(server.key_path.parent / "pepper.key", state / "pepper.key")
    proc = subprocess.Popen(gateway, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, status = time.monotonic() + 60, None
        while status != 200 and time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2,
                                   headers={"Authorization": f"Bearer {server.key}"}).status_code
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == 200  # the first gateway's admin key is recognized here
    finally:
        proc.terminate()
        proc.wait(30)

def test_keys_are_never_in_the_logs(server):
    log = server.log_path.read_text()  # serve's output went to a file, as under systemd or docker
    assert server.key not in log
    assert f"Created the first admin key: it is in {server.key_path}" in " ".join(log.split())


def test_the_first_admin_key_is_shown_once_on_a_terminal(tmp_path):
    from conftest import Server

    srv = Server(tmp_path, {"models": [{"name": "m", "source": "embedded", "context": 256, "slots": 1}]})
    srv.start(terminal=True)
    deadline = time.monotonic() + 30  # the banner follows readiness
    while "Try it:" not in srv.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    shown = srv.log_path.read_text()
    assert "shown once" in shown and shown.count(srv.key) == 1
    srv.stop()
    assert srv.log_path.read_text().count(srv.key) == 1  # and never again, to the end


def test_unauthenticated_mode_is_explicit_and_loopback_only(tmp_path):
    from conftest import Server

    srv = Server(tmp_path, {"auth": {"enabled": False},
                            "models": [{"name": "m", "source": "embedded", "context": 256, "slots": 1}]}).start()
    try:
        assert srv.key is None  # no bootstrap key is made when auth is off
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "m", "messages": HELLO, "max_tokens": 1})
        assert r.status_code == 200
        assert "auth is off" in srv.log_path.read_text()
    finally:
        srv.stop()


def test_every_request_is_audited_without_its_text(server, role_keys):
    secret_prompt = "Patient Zhang San, ID 11010519491231002X, asks about dosage"
    ok = server.http.post("/v1/chat/completions", json={"model": "smollm2-135m", "max_tokens": 2,
                                                        "messages": [{"role": "user", "content": secret_prompt}]})
    denied = httpx.get(server.url + "/admin/v1/users", headers={"Authorization": f"Bearer {role_keys['api_consumer']}"})
    assert ok.status_code == 200 and denied.status_code == 403
    with as_key(server, role_keys["auditor"]) as auditor:
        records = auditor.get("/admin/v1/audit", params={"limit": 10000}).json()["data"]
        assert auditor.get("/admin/v1/audit/verify").json()["ok"] is True
    by_request = {}
    for r in records:
        by_request.setdefault(r.get("request_id"), []).append(r)
    allowed = by_request[ok.headers["x-request-id"]]
    assert [r["event"] for r in allowed] == ["request", "response"]
    assert allowed[0]["decision"] == "allow" and allowed[0]["role"] == "admin" and allowed[0]["ip"] == "127.0.0.1"
    assert allowed[1]["status"] == 200 and allowed[1]["model"] == "smollm2-135m"
    assert allowed[1]["completion_tokens"] == 2 and allowed[1]["prompt_tokens"] > 5 and allowed[1]["latency_ms"] > 0
    refused = by_request[denied.headers["x-request-id"]]
    assert len(refused) == 1 and refused[0]["decision"] == "deny" and refused[0]["status"] == 403
    assert refused[0]["role"] == "api_consumer" and refused[0]["reason"] == "permission_denied"
    state = server.key_path.parent / "audit"
    raw = b"".join(p.read_bytes() for p in state.glob("audit.db*"))
    assert b"Zhang" not in raw and b"11010519491231002X" not in raw and b"dosage" not in raw


def test_the_audit_records_the_connecting_address_unless_a_named_proxy_forwards_it(server, role_keys, tmp_path):
    from conftest import Server, start_sim

    def audited_ip(srv, auditor_key, request_id):
        with as_key(srv, auditor_key) as auditor:
            records = auditor.get("/admin/v1/audit", params={"limit": 10000}).json()["data"]
        return next(r["ip"] for r in records if r.get("request_id") == request_id and r["event"] == "request")

    forged = {"X-Forwarded-For": "203.0.113.9"}
    r = server.http.get("/v1/models", headers=forged)
    assert audited_ip(server, role_keys["auditor"], r.headers["x-request-id"]) == "127.0.0.1"  # a local client cannot forge it
    stub, port = start_sim("--dialect", "openai", "--model", "upstream")  # (the seekstack 0.1 form of an OpenAI server below)
    behind_proxy = Server(tmp_path, {"server": {"trusted_proxies": ["127.0.0.0/8"]},
                                     "models": [{"name": "upstream", "engine": "remote", "url": f"http://127.0.0.1:{port}"}]})
    try:
        behind_proxy.start()
        r = behind_proxy.http.get("/v1/models", headers=forged)
        auditor = auditor_key(behind_proxy)
        assert audited_ip(behind_proxy, auditor, r.headers["x-request-id"]) == "203.0.113.9"
    finally:
        behind_proxy.stop()
        stub.kill()
        stub.wait()


def test_audit_cli_verifies_and_exports(server, tmp_path):
    from test_cli import cli

    for _ in range(3):  # answered requests of its own, whatever else ran before
        r = server.http.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO, "max_tokens": 1})
        assert r.status_code == 200
    result = cli("audit", "verify", "--config", str(server.config_path))
    assert result.returncode == 0 and result.stdout.startswith("ok:"), result.stderr
    out = tmp_path / "audit.csv"
    result = cli("audit", "export", "--config", str(server.config_path), "--format", "csv", "--event", "response",
                 "-o", str(out))
    assert result.returncode == 0, result.stderr
    rows = out.read_text().splitlines()
    assert rows[0].split(",")[0] and len(rows) > 3 and all(",response," in row for row in rows[1:])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # records name keys, users and addresses
    bad = cli("audit", "export", "--config", str(server.config_path), "--since", "yesterday")
    assert bad.returncode == 1 and "ISO 8601" in bad.stderr and "Traceback" not in bad.stderr


def test_audit_store_gone_means_nothing_is_served(tmp_path):
    from conftest import Server, engine_predicted

    srv = Server(tmp_path, {"models": [{"name": "m", "source": "embedded", "context": 256, "slots": 1}]}).start()
    try:
        engine = srv.replicas()[0]["base_url"]
        body = {"model": "m", "messages": HELLO, "max_tokens": 4}
        assert srv.http.post("/v1/chat/completions", json=body).status_code == 200
        predicted = engine_predicted(engine)
        audit_db = srv.key_path.parent / "audit" / "audit.db"
        audit_db.rename(audit_db.with_name("elsewhere.db"))
        r = srv.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 503 and r.json()["error"]["code"] == "audit_unavailable" and "choices" not in r.json()
        assert int(r.headers["retry-after"]) > 0
        assert srv.http.post("/v1/chat/completions", json=body).status_code == 503  # stays closed
        assert engine_predicted(engine) == predicted  # the engine did no work
        assert srv.http.get("/healthz").status_code == 200  # and the gateway is alive
    finally:
        srv.stop()



def test_captured_bodies_are_encrypted_and_only_auditors_read_them(tmp_path):
    from conftest import TEAM_AUDITOR, Server, make_key, make_user

    srv = Server(tmp_path, {"audit": {"capture_bodies": True}, "roles": {"team_auditor": TEAM_AUDITOR},
                            "models": [{"name": "m", "source": "embedded", "context": 256, "slots": 1}]}).start()
    try:
        r = srv.http.post("/v1/chat/completions", headers={"x-seekstack-important": "true"}, json={
            "model": "m", "max_tokens": 4, "grammar": 'root ::= "fine"',
            "messages": [{"role": "user", "content": "Patient Qian asks about dosage"}]})
        assert r.status_code == 200
        rid = r.headers["x-request-id"]
        auditor = auditor_key(srv)
        with as_key(srv, auditor) as a:
            body = a.get(f"/admin/v1/audit/bodies/{rid}").json()
        assert body["request"]["messages"][0]["content"] == "Patient Qian asks about dosage"
        assert body["response"] == "fine"
        assert srv.http.get(f"/admin/v1/audit/bodies/{rid}").status_code == 403  # not even the admin
        # a team's own auditor reads its team's bodies; another team's look like missing ones
        assert srv.security.post("/admin/v1/teams", json={"name": "ward7"}).status_code == 201
        with as_key(srv, make_key(srv, make_user(srv, "api_consumer", "ward7"))) as member:
            ours = member.post("/v1/chat/completions", json={"model": "m", "max_tokens": 2,
                                                             "messages": [{"role": "user", "content": "Ward 7 note"}]})
        assert ours.status_code == 200
        with as_key(srv, auditor_key(srv, "team_auditor", "ward7")) as ward_auditor:
            mine = ward_auditor.get(f"/admin/v1/audit/bodies/{ours.headers['x-request-id']}")
            assert mine.status_code == 200 and mine.json()["request"]["messages"][0]["content"] == "Ward 7 note"
            other, missing = (ward_auditor.get(f"/admin/v1/audit/bodies/{x}") for x in (rid, "req_nosuchrequest"))
            assert other.status_code == missing.status_code == 404
            assert other.json()["error"]["message"].replace(rid, "X") == \
                missing.json()["error"]["message"].replace("req_nosuchrequest", "X")
        raw = b"".join(p.read_bytes() for p in (srv.key_path.parent / "audit").glob("bodies.db*"))
        assert b"dosage" not in raw and b"Qian" not in raw
        # retention runs on request too; it is audited and keeps the chain verifiable
        assert srv.http.post("/admin/v1/retention/run").json() == {"audit_records": 0, "bodies": 0}
        with as_key(srv, auditor) as a:
            assert a.get("/admin/v1/audit/verify").json()["ok"] is True
            events = [x["event"] for x in a.get("/admin/v1/audit").json()["data"]]
        assert "retention" in events
    finally:
        srv.stop()


def test_separation_of_duties_through_the_api(server):
    """Each finding, against the real gateway: no duty reaches another's; `keys create` hands out the least role."""
    from test_cli import cli

    auditor_user = server.security.get("/admin/v1/users").json()["data"]
    assert {u["role"] for u in auditor_user if u["name"] in ("admin", "security", "auditor")} == \
        {"admin", "security_admin", "auditor"}  # bootstrap made one principal per duty
    # the admin no longer manages people or keys; the security admin cannot mint a key for the auditor
    assert server.http.post("/admin/v1/keys", json={"user": "auditor"}).status_code == 403
    r = server.security.post("/admin/v1/keys", json={"user": "auditor"})
    assert r.status_code == 403 and "audit:read" in r.json()["error"]["message"]
    # the security admin cannot make an admin (and so run retention or read the config)
    r = server.security.post("/admin/v1/users", json={"name": unique("evil"), "role": "admin"})
    assert r.status_code == 403 and "config:manage" in r.json()["error"]["message"]
    assert server.security.post("/admin/v1/retention/run").status_code == 403
    # `seekstack keys create` with no options: the least-privileged role, not the caller's own
    created = cli("keys", "create", "--json", "--config", str(server.config_path))
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["role"] == "api_consumer"
    # everyone manages their own keys: an auditor rotates its key without keys:manage
    with as_key(server, auditor_key(server)) as auditor:
        new = auditor.post("/admin/v1/keys", json={"name": "rotated"})
        assert new.status_code == 201 and new.json()["role"] == "auditor"
        mine = auditor.get("/admin/v1/keys").json()["data"]
        assert {k["user"] for k in mine} == {new.json()["user"]}  # its own keys only
