"""The web console in a real browser: Debian's Chromium driven by Playwright, against a real
`seekstack serve` with the embedded model on llama.cpp and a simulated DeepSeek-R1 (the
simulator stands in for an R1 engine, which cannot run here, and says so: it echoes the prompt
and reasons about it, slowly enough to watch the tokens arrive).

Screenshots of every page in both languages go to ``$SEEKSTACK_CONSOLE_SHOTS`` when it is set
(``make screenshots`` sets it to docs/console), else to a temporary directory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from seekstack.console.i18n import LANGUAGES, catalog
from seekstack.config import Settings
from seekstack.console.pages import PAGES
from seekstack.governance import roster
from seekstack.governance.store import SqliteIdentityStore

from conftest import EMBEDDED, Server, auditor_key, make_key, make_user

R1 = {"name": "deepseek-r1-sim", "source": "embedded", "context": 2048, "slots": 4,
      "engine": {"kind": "llamacpp", "simulate": True}}
VIEWER = {"permissions": ["models:read"], "description": "sees which models there are"}
XSS = '<img src=x onerror="window.__xss=1;alert(1)">'
DOCS = Path(__file__).parents[2] / "docs" / "console"
# Who opens which page for the screenshots: the duties are apart, so no one sees every page.
OPENER = {"users": "security", "limits": "security", "audit": "auditor"}
UNLABELED = """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")).map(el => el.outerHTML)"""


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    server = Server(tmp, {"models": [EMBEDDED, R1], "roles": {"viewer": VIEWER},
                          "pii": {"models": {"deepseek-r1-sim": "mask"}}})
    server.env = {"SEEKSTACK_SIM_OPTIONS": "--itl-ms 30"}
    server.start()
    state = Path(server.key_path).parent
    server.keys = {"admin": server.key, "security": (state / "security-admin.key").read_text().strip(),
                   "auditor": (state / "auditor.key").read_text().strip()}
    yield server
    server.stop()


def until(page, predicate: str, timeout: float = 20.0):
    """Poll a JS function in the page until it returns something truthy (Playwright's
    wait_for_function evaluates strings, which the console's CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(predicate)):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {predicate}"
        time.sleep(0.02)
    return value


def sign_in(browser, server, key: str, lang: str = "en"):
    """A new browser (its own cookies) signed in with ``key`` through the sign-in form."""
    context = browser.new_context(locale=lang, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append((d.type, d.message)), d.accept()))
    page.goto(server.url + "/console/keys")
    assert "/console/signin" in page.url  # not signed in: the sign-in page, then back to where it was going
    page.fill("#key", key)
    page.click("#signin button[type=submit]")
    page.wait_for_url(server.url + "/console/keys")
    return page


def api(page, method: str, path: str, body=None, csrf: bool = True) -> dict:
    """A call from the page's own script context (its cookie), with or without the CSRF token."""
    return page.evaluate("""async ([method, path, body, csrf]) => {
        const headers = {"Content-Type": "application/json"};
        if (csrf) headers["X-CSRF-Token"] = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)});
        return {status: r.status, body: await r.text()};
    }""", [method, path, body, csrf])


def test_sign_in_and_chat_token_by_token_with_reasoning_folded(browser, console):
    page = sign_in(browser, console, console.keys["admin"])
    cookie = next(c for c in page.context.cookies() if c["name"] == "seekstack_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # Secure under TLS only
    assert page.evaluate("document.cookie").find("seekstack_session") < 0  # out of the page script's reach

    page.goto(console.url + "/console/playground")
    assert "mask" in page.inner_text("main") or "脱敏" in page.inner_text("main")  # the PII policy in force
    page.select_option("#model", "deepseek-r1-sim")
    page.evaluate("""() => {  // every length the answer passes through, as the page shows it
        window.__lengths = [];
        new MutationObserver(() => {
            const answer = document.querySelector("li.assistant .text:not(details .text)");
            if (answer) window.__lengths.push(answer.textContent.length);
        }).observe(document.getElementById("conversation"), {subtree: true, childList: true, characterData: true});
    }""")
    page.fill("#prompt", "one two three four five six seven eight nine ten")
    page.click("#chat button[type=submit]")
    page.wait_for_selector("li.assistant[data-done=true]", timeout=30000)
    answer = page.locator("li.assistant").last
    assert answer.locator(":scope > .text").inner_text().startswith("Echo: one two three")
    lengths = page.evaluate("window.__lengths")
    growing = sorted(set(lengths))
    assert len(growing) >= 8 and lengths == sorted(lengths), lengths  # arrived piece by piece, never rewritten
    details = answer.locator("details")
    assert details.is_visible() and details.get_attribute("open") is None  # reasoning shown, folded
    assert "Thinking about one two" in details.locator(".text").text_content()
    assert not answer.locator("details .text").is_visible()
    details.locator("summary").click()
    assert answer.locator("details .text").is_visible()

    page.select_option("#model", "smollm2-135m")  # the real llama.cpp engine
    page.fill("#prompt", "Say hello.")
    page.click("#chat button[type=submit]")
    page.wait_for_selector("li.assistant[data-done=true] >> nth=1", timeout=60000)
    real = page.locator("li.assistant").last
    assert real.locator(":scope > .text").inner_text().strip()
    assert int(real.locator(":scope > .text").get_attribute("data-chunks")) >= 2
    assert page.locator("#chat .error").inner_text() == ""
    page.context.close()


def test_stop_ends_an_answer_mid_stream(browser, console):
    page = sign_in(browser, console, console.keys["admin"])
    page.goto(console.url + "/console/playground")
    page.select_option("#model", "deepseek-r1-sim")
    words = " ".join(f"w{i}" for i in range(60))  # echoed back: ~70 tokens, 30 ms apart
    page.fill("#prompt", words)
    assert not page.is_visible("#stop")  # only while an answer streams
    page.click("#chat button[type=submit]")
    until(page, "() => Number(document.querySelector('li.assistant > .text')?.dataset.chunks || 0) >= 3")
    assert page.is_visible("#stop")
    page.click("#stop")
    page.wait_for_selector("li.assistant[data-done=true]")
    answer = page.locator("li.assistant").last
    assert answer.locator(".usage.stopped").inner_text() == "stopped by you"
    assert "w59" not in answer.locator(":scope > .text").inner_text()  # it did not run to the end
    assert not page.is_visible("#stop") and page.locator("#chat .error").inner_text() == ""
    page.fill("#prompt", "again")  # the conversation goes on
    page.click("#chat button[type=submit]")
    page.wait_for_selector("li.assistant[data-done=true] >> nth=1")
    assert page.locator("li.assistant").last.locator(":scope > .text").inner_text().startswith("Echo:")
    page.context.close()


def test_the_audit_log_pages_back(browser, console):
    for _ in range(6):  # twelve records at least, whichever tests ran before
        assert console.http.get("/v1/models").status_code == 200
    page = sign_in(browser, console, console.keys["auditor"])
    page.goto(console.url + "/console/audit?limit=5")
    first = [int(s) for s in page.locator("#records tbody tr td:first-child").all_inner_texts()]
    assert len(first) == 5 and first == sorted(first, reverse=True)
    page.click("#older")
    second = [int(s) for s in page.locator("#records tbody tr td:first-child").all_inner_texts()]
    assert second == list(range(first[-1] - 1, first[-1] - 6, -1))  # the next five back, none skipped
    for bad in ("before=abc", "limit=0", "since=2026-13-45"):  # a bad parameter: a page saying which
        assert page.goto(console.url + "/console/audit?" + bad).status in (400, 422)
        assert page.locator("h1").inner_text() == "Bad request" and bad.split("=")[0] in page.inner_text("main")
    page.context.close()


def test_sign_in_with_a_password(browser, console):
    """The security admin sets a user's password; the user signs in with it (no key in hand); the
    session runs on a key minted for it, which the sign-out revokes. A password opens nothing else."""
    user = make_user(console, "api_consumer")
    security = httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['security']}"})
    assert security.put(f"/admin/v1/users/{user}/password", json={"password": "short"}).status_code == 400
    assert security.put(f"/admin/v1/users/{user}/password", json={"password": "一个足够长的中文密码短语"}).status_code == 200
    assert security.put("/admin/v1/users/admin/password", json={"password": "take over the system"}).status_code == 403
    basic = httpx.BasicAuth(user, "一个足够长的中文密码短语")
    assert httpx.get(console.url + "/v1/models", auth=basic).status_code == 401  # the API wants keys

    page = browser.new_context().new_page()
    page.goto(console.url + "/console/signin")
    page.fill("#user", user)
    page.fill("#password", "not the password at all")
    page.click("#signin-password button[type=submit]")
    page.wait_for_selector("#signin-password .error:not(:empty)")
    assert "invalid user name or password" in page.inner_text("#signin-password .error")
    auditor = httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['auditor']}"})
    failed = [r for r in auditor.get("/admin/v1/audit", params={"event": "request"}).json()["data"]
              if r["endpoint"] == "/console/session" and r["decision"] == "deny"]
    assert failed[-1]["attempted_user"] == user and failed[-1]["status"] == 401  # for whom, never the password
    assert "not the password" not in json.dumps(failed)
    auditor.close()
    page.fill("#password", "一个足够长的中文密码短语")
    page.click("#signin-password button[type=submit]")
    page.wait_for_url(console.url + "/console")
    assert page.locator("nav a").all_inner_texts() == ["Overview", "Playground", "Models", "API keys", "Planner"]
    page.goto(console.url + "/console/keys")
    row = page.locator("#keys tr", has_text="console sign-in (password)")
    kid = row.get_attribute("data-key")
    assert row.locator(".state.active").count() == 1
    page.click("#signout")
    page.wait_for_url(console.url + "/console/signin")
    keys = {k["id"]: k for k in security.get("/admin/v1/keys").json()["data"]}
    assert keys[kid]["revoked"] is not None  # the session's key went with it
    security.close()
    page.context.close()
    page = sign_in(browser, console, console.keys["security"])  # the keys page leaves the ended session's key out
    page.goto(console.url + "/console/keys")
    assert page.locator(f'#keys tr[data-key="{kid}"]').count() == 0 and page.locator("#keys tr[data-key]").count() > 0
    page.context.close()


def test_a_user_name_is_locked_after_ten_failed_password_sign_ins(console):
    """console.password_failures (10) within console.password_window: then 429 with Retry-After,
    the right password too; the user's keys still work."""
    user = make_user(console, "api_consumer")
    security = httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['security']}"})
    assert security.put(f"/admin/v1/users/{user}/password", json={"password": "the right passphrase"}).status_code == 200
    security.close()
    codes = [httpx.post(console.url + "/console/session", auth=httpx.BasicAuth(user, f"guess number {i}")).status_code
             for i in range(10)]
    assert codes == [401] * 10
    locked = httpx.post(console.url + "/console/session", auth=httpx.BasicAuth(user, "the right passphrase"))
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
    error = locked.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "failed password sign-ins" in error["message"]


def test_signing_in_again_ends_the_browser_s_previous_session(console):
    from seekstack.governance.sessions import COOKIE

    key = {"Authorization": f"Bearer {console.keys['admin']}"}
    old = httpx.post(console.url + "/console/session", headers=key).cookies[COOKIE]
    new = httpx.post(console.url + "/console/session", headers={**key, "Cookie": f"{COOKIE}={old}"}).cookies[COOKIE]
    assert new != old
    assert httpx.get(console.url + "/v1/models", headers={"Cookie": f"{COOKIE}={old}"}).status_code == 401
    assert httpx.get(console.url + "/v1/models", headers={"Cookie": f"{COOKIE}={new}"}).status_code == 200


def test_a_key_is_shown_once_revoked_and_then_refused_by_the_api(browser, console):
    page = sign_in(browser, console, console.keys["admin"])
    page.fill("#key-name", "ci pipeline")
    page.click("#new-key-h ~ form button[type=submit]")
    page.wait_for_selector("#new-key:not([hidden])")
    secret = page.inner_text("#new-key code")
    assert secret.startswith("sk-")
    assert httpx.get(console.url + "/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    page.click("#new-key button.done")
    page.wait_for_load_state()
    assert secret not in page.content()  # never rendered again
    row = page.locator("#keys tr", has_text="ci pipeline")
    kid = row.get_attribute("data-key")
    assert secret.startswith(f"sk-{kid}")
    row.locator("button.danger").click()  # confirm() is accepted by the page's dialog handler
    page.wait_for_selector(f'tr[data-key="{kid}"] .state.revoked')
    assert page.dialogs and page.dialogs[-1][0] == "confirm"
    refused = httpx.get(console.url + "/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    page.context.close()


def test_a_viewer_sees_no_admin_page_and_writes_need_the_csrf_token(browser, console):
    viewer = auditor_key(console, "viewer")  # a custom role nobody holds entirely: provisioned on the host
    page = sign_in(browser, console, viewer)
    menu = page.locator("nav a").all_inner_texts()
    assert menu == ["Overview", "Models", "API keys", "Planner"]
    for path in ("/console/users", "/console/audit", "/console/limits", "/console/usage", "/console/playground",
                 "/console/audit/verify", "/console/usage.csv"):
        response = page.goto(console.url + path)
        assert response.status == 403, path
        assert page.locator("h1").inner_text() == "Not allowed"
    for method, path in (("GET", "/admin/v1/users"), ("GET", "/admin/v1/audit"), ("POST", "/admin/v1/users"),
                         ("PUT", "/admin/v1/limits"), ("POST", "/v1/chat/completions")):
        assert api(page, method, path, {} if method != "GET" else None)["status"] == 403, path

    page.goto(console.url + "/console/keys")
    without = api(page, "POST", "/admin/v1/keys", {"name": "no token"}, csrf=False)
    assert without["status"] == 403 and "CSRF" in json.loads(without["body"])["error"]["message"]
    forged = page.evaluate("""async () => (await fetch("/admin/v1/keys", {method: "POST",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": "0".repeat(40)}, body: "{}"})).status""")
    assert forged == 403
    assert api(page, "POST", "/admin/v1/keys", {"name": "with token"})["status"] == 201  # the same call, with it
    page.context.close()



def test_the_models_page_lists_the_gateways_on_the_database(browser, console):
    """The system admin sees every gateway on the governance database (this one serving, marked);
    in Chinese too; a viewer, who may not manage models, sees no such section."""
    writer = (Path(console.key_path).parent / "audit" / "audit-writer.id").read_text()
    for lang, serving, this, same in (("en", "serving", "(this one)", "as the others"),
                                      ("zh-CN", "服务中", "(本网关)", "与其他网关一致")):
        page = sign_in(browser, console, console.keys["admin"], lang)
        page.goto(console.url + "/console/models")
        row = page.locator(f"#gateways tr[data-writer='{writer}']")
        assert row.get_attribute("aria-current") == "true"
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == f"{writer} {this}" and cells[1] == serving and cells[3] == f"127.0.0.1:{console.port}"
        assert cells[6] == same  # its settings: no other gateway to differ from
        page.context.close()
    page = sign_in(browser, console, auditor_key(console, "viewer"))
    page.goto(console.url + "/console/models")
    assert page.locator("#gateways").count() == 0 and page.locator("h1").inner_text() == "Models"
    page.context.close()


def test_a_gateway_whose_settings_differ_from_the_others_is_named_on_the_models_page(browser, console):
    """Two more gateways on the database (enrolled through the store, as theirs would be) run
    without this one's custom role and PII rule: this one is the odd one out, in roles and pii."""
    store = SqliteIdentityStore(Path(console.key_path).parent / "seekstack.db")
    others = roster.policy_of(Settings())
    for n in (1, 2):
        store.gateway_started(f"other-{n}", "i", "host-b", f"10.0.0.{n}:8800", "/srv/audit", "0", 1, json.dumps(others))
    try:
        writer = (Path(console.key_path).parent / "audit" / "audit-writer.id").read_text()
        for lang, differs in (("en", "differs: roles, pii"), ("zh-CN", "不一致：roles, pii")):
            page = sign_in(browser, console, console.keys["admin"], lang)
            page.goto(console.url + "/console/models")
            assert page.locator(f"#gateways tr[data-writer='{writer}'] td").nth(6).inner_text() == differs
            assert page.locator("#gateways tr[data-writer='other-1'] td").nth(6).inner_text() != differs
            page.context.close()
    finally:
        for n in (1, 2):
            store.gateway_stopped(f"other-{n}", "i")
        store.close()

def test_markup_in_prompts_answers_and_names_is_shown_as_text(browser, console):
    security = httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {console.keys['security']}"})
    bad_user = security.post("/admin/v1/users", json={"name": XSS, "role": "api_consumer"})
    assert bad_user.status_code == 400  # names are letters, digits and - _ . @: markup cannot be one
    user = make_user(console, "api_consumer")
    make_key(console, user, name=XSS)  # a key's name is free text
    # An audit field carrying markup: the endpoint a client asked for
    httpx.get(console.url + "/v1/" + XSS, headers={"Authorization": f"Bearer {console.keys['admin']}"})

    page = sign_in(browser, console, console.keys["admin"])
    page.goto(console.url + "/console/playground")
    page.select_option("#model", "deepseek-r1-sim")
    page.fill("#prompt", f"look {XSS} here")
    page.click("#chat button[type=submit]")
    page.wait_for_selector("li.assistant[data-done=true]", timeout=30000)
    assert XSS in page.locator("li.user .text").last.inner_text()
    assert XSS in page.locator("li.assistant > .text").last.inner_text()  # the model's answer echoes it
    assert page.locator("#conversation img").count() == 0
    page.context.close()

    page = sign_in(browser, console, console.keys["security"])
    assert XSS in page.locator("#keys").inner_text() and page.locator("#keys img").count() == 0
    audit = sign_in(browser, console, console.keys["auditor"])
    audit.goto(console.url + "/console/audit")
    assert XSS in audit.locator("#records").inner_text() and audit.locator("#records img").count() == 0
    seq = audit.locator("#records tr", has_text=XSS).first.locator("a").inner_text()
    audit.goto(console.url + f"/console/audit/records/{seq}")
    assert XSS in audit.locator("#record").inner_text() and audit.locator("#record img").count() == 0
    for p in (page, audit):
        assert p.evaluate("window.__xss") is None and not [d for d in p.dialogs if d[0] == "alert"]
        p.context.close()


def test_usage_charts_and_csv_and_audit_export(browser, console):
    for model in ("deepseek-r1-sim", "smollm2-135m"):
        assert console.http.post("/v1/chat/completions", json={"model": model, "max_tokens": 4, "messages": [
            {"role": "user", "content": "count"}]}).status_code == 200
    page = sign_in(browser, console, console.keys["admin"])
    page.goto(console.url + "/console/usage")
    assert page.locator("svg.chart").count() == 4
    assert "deepseek-r1-sim" in page.locator("main").inner_text()
    csv_text = page.request.get(console.url + "/console/usage.csv").text()
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert {r["model"] for r in rows} >= {"deepseek-r1-sim", "smollm2-135m"}
    assert sum(int(r["requests"]) for r in rows) >= 3
    page.context.close()

    audit = sign_in(browser, console, console.keys["auditor"])
    lines = audit.request.get(console.url + "/console/audit/export?event=response").text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records and {r["event"] for r in records} == {"response"}
    assert all("messages" not in r and "content" not in r for r in records)  # metadata only
    audit.context.close()


def test_every_page_in_both_languages(browser, console, tmp_path):
    shots = Path(os.environ.get("SEEKSTACK_CONSOLE_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    blocked = []  # what the Content-Security-Policy refused: nothing, or the page relies on inline code
    for lang in LANGUAGES:
        pages = {who: sign_in(browser, console, key, lang) for who, key in console.keys.items()}
        for page in pages.values():
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        for p in PAGES:
            page = pages[OPENER.get(p.name, "admin")]
            response = page.goto(console.url + p.path)
            assert response.status == 200, (lang, p.path)
            assert page.get_attribute("html", "lang") == lang
            assert page.locator("h1").inner_text() == catalog(lang)[f"nav.{p.name}"]
            chrome = " ".join(page.locator("header, h1, h2, label, button, th, p, a.button, footer").all_inner_texts())
            assert not [key for key in catalog(lang) if key in chrome]  # every string came through its catalog
            if p.name == "playground":  # a conversation in the picture
                page.select_option("#model", "deepseek-r1-sim")
                page.fill("#prompt", "DeepSeek-R1 在本地运行" if lang == "zh-CN" else "Run DeepSeek-R1 on your own hardware")
                page.click("#chat button[type=submit]")
                page.wait_for_selector("li.assistant[data-done=true]", timeout=30000)
            height = min(page.evaluate("document.documentElement.scrollHeight"), 1400)  # the top of a long page
            page.screenshot(path=str(shots / f"{lang}-{p.name}.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": 1280, "height": height})
        for page in pages.values():
            page.context.close()
    assert not blocked, blocked
    headers = httpx.get(console.url + "/console/signin").headers
    assert "script-src 'self'" in headers["content-security-policy"] and "unsafe" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    # the switch: from Chinese to English, remembered
    page = sign_in(browser, console, console.keys["admin"], "zh-CN")
    assert page.locator("h1").inner_text() == "API 密钥"
    page.click("a[hreflang=en]")
    page.goto(console.url + "/console/models")
    assert page.locator("h1").inner_text() == "Models"
    page.context.close()


def test_keyboard_alone_signs_in_and_every_field_has_a_label(browser, console):
    context = browser.new_context()
    page = context.new_page()
    page.goto(console.url + "/console/signin")
    until(page, "() => document.activeElement.id === 'key'")  # the key field has the focus at once
    assert page.evaluate(UNLABELED) == []
    page.keyboard.type(console.keys["security"])
    page.keyboard.press("Enter")
    page.wait_for_url(console.url + "/console")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"  # first stop: skip to content
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto(console.url + "/console")
    reached = []
    for _ in range(20):  # the menu is reachable by Tab, in order
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.getAttribute('href')"))
    paths = [p.path for p in PAGES]
    assert [p for p in paths if p in reached] == list(dict.fromkeys(p for p in reached if p in paths))
    assert {"/console/keys", "/console/users", "/console/limits"} <= set(reached)

    owners = {who: sign_in(browser, console, key) for who, key in console.keys.items()}
    for p in PAGES:
        owner = owners[OPENER.get(p.name, "admin")]
        owner.goto(console.url + p.path)
        assert owner.evaluate(UNLABELED) == [], p.path
        assert owner.locator("main h1").count() == 1 and owner.locator("a.skip").count() == 1
    for page in (page, *owners.values()):
        page.context.close()


def test_sign_out_ends_the_session(browser, console):
    page = sign_in(browser, console, console.keys["admin"])
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "seekstack_session")
    page.click("#signout")
    page.wait_for_url(console.url + "/console/signin")
    replay = httpx.get(console.url + "/admin/v1/whoami", cookies={"seekstack_session": token})
    assert replay.status_code == 401  # the old cookie is dead on the server, not just forgotten by the browser
    assert page.goto(console.url + "/console").url.startswith(console.url + "/console/signin")
    page.context.close()


def test_audit_verify_shows_ok_then_the_first_bad_record(browser, console):
    """Last in this module: it tampers with the server's audit log."""
    page = sign_in(browser, console, console.keys["auditor"])
    page.goto(console.url + "/console/audit/verify")
    assert "verdict ok" in page.get_attribute("#verdict", "class")
    db = sqlite3.connect(Path(console.key_path).parent / "audit" / "audit.db", isolation_level=None)
    data = json.loads(db.execute("SELECT data FROM records WHERE seq = 5").fetchone()[0])
    data["user"] = "someone-else"
    db.execute("UPDATE records SET data = ? WHERE seq = 5", (json.dumps(data, sort_keys=True, separators=(",", ":")),))
    db.close()
    page.goto(console.url + "/console/audit/verify?lang=zh-CN")
    assert "verdict bad" in page.get_attribute("#verdict", "class")
    assert page.inner_text("#verdict") == catalog("zh-CN")["audit.broken"]
    assert page.inner_text("#first-bad") == "#5"
    page.click("#first-bad")
    assert "someone-else" in page.locator("#record").inner_text()
    page.context.close()


def test_the_docs_show_every_page_in_both_languages():
    text = (DOCS.parent / "console.md").read_text()
    for lang in LANGUAGES:
        for p in PAGES:
            name = f"{lang}-{p.name}.png"
            assert (DOCS / name).is_file() and f"console/{name}" in text, name
