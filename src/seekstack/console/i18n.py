"""The console's languages: message catalogs, the choice of language, and locale formats.

Every string a person reads comes from ``messages/<lang>.json`` through :meth:`Translator.t`;
a key missing from a catalog is an error (a test checks every key the templates and the
console's code use against both catalogs), never a silent fallback to another language.

The language is the ``lang`` query parameter (the switch in the page header, remembered in a
cookie), else that cookie, else the browser's ``Accept-Language``, else English. Numbers and
dates are written the way each locale writes them: ``1,234,567`` and ``30 Nov 2026 06:40``;
``1,234,567`` and ``2026年11月30日 06:40``; compact chart labels ``12K`` and ``1.2万``.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

LANGUAGES = {"en": "English", "zh-CN": "简体中文"}
DEFAULT = "en"
LANG_COOKIE = "seekstack_lang"
_MESSAGES = Path(__file__).parent / "messages"
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.cache
def catalog(lang: str) -> dict[str, str]:
    return json.loads((_MESSAGES / f"{lang}.json").read_text(encoding="utf-8"))


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language to answer in (see the module's docstring)."""
    for choice in (query, cookie):
        if choice in LANGUAGES:
            return choice
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("zh"):  # zh, zh-CN, zh-Hans…: simplified Chinese is what the console has
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT


class Translator:
    def __init__(self, lang: str):
        self.lang = lang
        self.messages = catalog(lang)

    def t(self, key: str, **values) -> str:
        """The message ``key`` in this language, with ``{name}`` fields filled in (KeyError when missing)."""
        text = self.messages[key]
        return text.format(**values) if values else text

    def number(self, value: float | int | None, digits: int = 0) -> str:
        if value is None:
            return "—"
        return f"{value:,.{digits}f}"

    def compact(self, value: float) -> str:
        """A short label for a chart axis: 12K / 3.4M in English, 1.2万 / 3.4亿 in Chinese."""
        steps = ((1e8, "亿"), (1e4, "万")) if self.lang == "zh-CN" else ((1e9, "B"), (1e6, "M"), (1e3, "K"))
        for size, suffix in steps:
            if abs(value) >= size:
                return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
        return f"{value:,.0f}"

    def date(self, ts: float | None, with_time: bool = True) -> str:
        """A Unix time, in UTC, as this locale writes dates."""
        if ts is None:
            return "—"
        t = time.gmtime(ts)
        clock = f" {t.tm_hour:02d}:{t.tm_min:02d}" if with_time else ""
        if self.lang == "zh-CN":
            return f"{t.tm_year}年{t.tm_mon}月{t.tm_mday}日{clock}"
        return f"{t.tm_mday} {_MONTHS_EN[t.tm_mon - 1]} {t.tm_year}{clock}"

    def day(self, iso_day: str) -> str:
        """A YYYY-MM-DD day, as this locale writes it."""
        year, month, day = (int(p) for p in iso_day.split("-"))
        if self.lang == "zh-CN":
            return f"{month}月{day}日"
        return f"{day} {_MONTHS_EN[month - 1]}"
