"""The console's catalogs, language choice, locale formats, charts and small guards — without a
browser (tests/integration/test_console_browser.py has the browser)."""

from __future__ import annotations

import re
import string
import typing
from pathlib import Path

import pytest

from seekstack.config import FallbackReason, PiiMode
from seekstack.console import charts
from seekstack.console.errors import KNOWN
from seekstack.console.i18n import LANGUAGES, Translator, catalog, negotiate
from seekstack.console.pages import PAGES
from seekstack.console.routes import _cell, _local
from seekstack.governance import roster
from seekstack.governance.store import LIMIT_FIELDS
from seekstack.registry import registry as registry_mod
from seekstack import supervisor
from seekstack.traffic import rollout

CONSOLE = Path(charts.__file__).parent
STATIC_KEY = re.compile(r"""\bt\(\s*['"]([a-z_.0-9-]+)['"]\s*[,)]""")
DYNAMIC_KEY = re.compile(r"""\bt\(\s*'([a-z_.]+)'\s*~""")

# Every family of keys the templates build at run time, with every value it can take.
FAMILIES: dict[str, list[str]] = {
    "nav.": [p.name for p in PAGES],
    "about.": [p.name for p in PAGES],
    "error.": [str(code) for code in KNOWN] + [f"{code}.explain" for code in KNOWN],
    "state.": [registry_mod.MODEL_READY, registry_mod.MODEL_STARTING, registry_mod.MODEL_DOWN, registry_mod.MODEL_UNLOADED,
               supervisor.STARTING, supervisor.READY, supervisor.RESTARTING, supervisor.STOPPED, supervisor.UNLOADED,
               supervisor.DRAINING, supervisor.EJECTED, supervisor.PROBING],
    "source.": ["local", "static", "discovered"],
    "rollout.": [rollout.CANARY, rollout.BLUE_GREEN],
    "rollout.state.": [rollout.STARTING, rollout.RUNNING, rollout.PROMOTED, rollout.ROLLED_BACK, rollout.ABORTED,
                       rollout.FAILED],
    "keys.state.": ["active", "revoked", "expired"],
    "gateway.state.": [roster.SERVING, roster.SILENT, roster.STOPPED],
    "pii.": list(typing.get_args(PiiMode)),
    "roles.scope.": ["team", "global"],
    "limits.scope.": ["key", "user", "team"],
    "limits.": list(LIMIT_FIELDS),
    "fallback_on.": list(typing.get_args(FallbackReason)),
    "task.": ["chat", "embeddings", "rerank"],
}


def used_keys() -> tuple[set[str], set[str]]:
    static, prefixes = set(), set()
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        static |= set(STATIC_KEY.findall(text))
        prefixes |= set(DYNAMIC_KEY.findall(text))
    return static, prefixes


def test_every_string_the_console_uses_is_in_every_catalog():
    static, prefixes = used_keys()
    assert len(static) > 150 and prefixes  # the scan found the templates
    assert prefixes <= set(FAMILIES), f"a key family this test does not enumerate: {prefixes - set(FAMILIES)}"
    needed = static | {prefix + value for prefix in prefixes for value in FAMILIES[prefix]}
    for lang in LANGUAGES:
        missing = sorted(needed - set(catalog(lang)))
        assert not missing, f"{lang} lacks {missing}"


def test_the_catalogs_have_the_same_keys_and_placeholders():
    en, zh = catalog("en"), catalog("zh-CN")
    assert set(en) == set(zh)
    fields = lambda text: sorted(f for _, f, _, _ in string.Formatter().parse(text) if f)  # noqa: E731
    for key in en:
        assert fields(en[key]) == fields(zh[key]), key
        assert en[key].strip() and zh[key].strip(), key
    assert sum(1 for v in zh.values() if re.search(r"[\u4e00-\u9fff]", v)) > 0.9 * len(zh)  # it is Chinese


def test_a_missing_string_is_an_error_not_english():
    with pytest.raises(KeyError):
        Translator("zh-CN").t("nav.no-such-page")


@pytest.mark.parametrize("query, cookie, accept, expected", [
    (None, None, None, "en"),
    (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    (None, None, "en-US,en;q=0.9,zh;q=0.8", "en"),
    (None, None, "fr-FR, zh-TW;q=0.5", "zh-CN"),
    (None, None, "de", "en"),
    (None, "zh-CN", "en", "zh-CN"),            # the switch, remembered, wins over the browser
    ("en", "zh-CN", "zh", "en"),               # and the switch just pressed over both
    ("xx", None, "zh-Hans", "zh-CN"),          # an unknown choice is ignored
    (None, None, "en;q=0.2, zh;q=0.9", "zh-CN"),
])
def test_the_language(query, cookie, accept, expected):
    assert negotiate(query, cookie, accept) == expected


def test_numbers_and_dates_per_locale():
    en, zh = Translator("en"), Translator("zh-CN")
    ts = 1796013600.0  # 2026-11-30 04:40 UTC
    assert en.date(ts) == "30 Nov 2026 04:40" and zh.date(ts) == "2026年11月30日 04:40"
    assert en.date(ts, with_time=False) == "30 Nov 2026" and en.date(None) == "—"
    assert en.day("2026-11-30") == "30 Nov" and zh.day("2026-11-30") == "11月30日"
    assert en.number(1234567) == zh.number(1234567) == "1,234,567"
    assert en.number(None) == "—" and en.number(2.5, 1) == "2.5"
    assert (en.compact(12000), zh.compact(12000)) == ("12K", "1.2万")
    assert (en.compact(340_000_000), zh.compact(340_000_000)) == ("340M", "3.4亿")


def test_charts_escape_their_labels():
    tr = Translator("en")
    svg = str(charts.hbars([("<script>alert(1)</script>", 5), ("b&c", 3)], tr, "t<i>tle"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "b&amp;c" in svg and "t&lt;i&gt;tle" in svg
    svg = str(charts.columns(['<img src=x onerror=alert(1)>'], [("s\"eries", [1.0])], tr, "x"))
    assert "<img" not in svg and "s&#34;eries" in svg
    assert "style=" not in svg  # colours come from the stylesheet: the CSP allows no inline style


@pytest.mark.parametrize("target, expected", [
    ("/console/usage", "/console/usage"), ("https://evil.example/", "/console"), ("//evil.example", "/console"),
    ("/console//evil.example", "/console"), ("/console\\@evil", "/console"), ("/admin/v1/keys", "/console"),
])
def test_the_page_after_sign_in_stays_on_this_server(target, expected):
    assert _local(target) == expected


def test_csv_cells_are_never_formulas():
    assert _cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")" and _cell("+1") == "'+1" and _cell("@a") == "'@a"
    assert _cell("team-a") == "team-a" and _cell(12) == 12


def test_no_inline_script_style_or_handler_in_any_template():
    """The Content-Security-Policy forbids them; a template that used one would break in the browser."""
    for path in CONSOLE.glob("templates/*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path.name   # scripts only from files
        assert not re.search(r"<style\b|\sstyle=", text), path.name               # styles only from the sheet
        assert not re.search(r"\son[a-z]+\s*=", text, re.I), path.name            # no onclick= and the like
        assert "|safe" not in text and "Markup(" not in text, path.name            # nothing bypasses escaping
    script = (CONSOLE / "static" / "console.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script


def test_each_duty_sees_its_own_pages():
    from seekstack.console.pages import visible
    from seekstack.governance.auth import Principal
    from seekstack.governance.policy import BUILTIN_ROLES

    def menu(role: str, endpoints=("*",)) -> list[str]:
        return [p.name for p in visible(Principal("k", "u", "t", BUILTIN_ROLES[role], endpoints=endpoints))]

    assert menu("admin") == ["overview", "playground", "models", "keys", "roles", "usage", "planner"]
    assert menu("security_admin") == ["overview", "playground", "models", "keys", "users", "roles", "limits", "usage",
                                      "planner"]
    assert menu("auditor") == ["overview", "keys", "roles", "audit", "planner"]
    assert menu("api_consumer") == ["overview", "playground", "models", "keys", "planner"]
    assert menu("admin", endpoints=("/v1/*", "/console", "/console/keys")) == ["overview", "keys"]  # a key's allow-list
    assert visible(None) == []


def test_the_planner_form_on_this_hosts_cpu():
    """`cpu` plans against this host's memory, as `seekstack plan --hardware cpu` does (not against none)."""
    from seekstack.console.planning import plan_form

    result = plan_form({"model": "deepseek-r1-distill-qwen-7b", "hardware": "cpu"}, Translator("en"))
    assert result["error"] is None and result["plan"].fits and result["plan"].usable_per_device_bytes > 0
    assert result["cost"] is None  # owning against renting compares GPUs
    bad = plan_form({"model": "deepseek-r1", "hardware": "9xNoSuchGPU"}, Translator("zh-CN"))
    assert bad["plan"] is None and "unknown GPU" in bad["error"]
