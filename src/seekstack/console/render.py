"""Rendering a console page: the templates (escaped by default), the language, the menu, the
CSRF token, and the security headers every console response carries."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .. import __version__
from ..governance.auth import Principal
from ..threads import off_loop
from .i18n import LANG_COOKIE, LANGUAGES, Translator, negotiate
from .pages import may, visible

# No inline script or style anywhere: scripts and styles only from the console's own files.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "no-referrer", "x-frame-options": "DENY", "cache-control": "no-store"}

_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)


def language(headers, query_string: bytes | str) -> tuple[str, bool]:
    """(language, whether the query chose it) from a request's headers and query string."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    asked = (parse_qs(query_string).get("lang") or [None])[0]
    cookie = accept = None
    for name, value in headers:
        name = name.decode("latin-1").lower() if isinstance(name, bytes) else name.lower()
        value = value.decode("latin-1") if isinstance(value, bytes) else value
        if name == "cookie":
            for part in value.split(";"):
                k, _, v = part.strip().partition("=")
                if k == LANG_COOKIE:
                    cookie = v
        elif name == "accept-language":
            accept = value
    return negotiate(asked, cookie, accept), asked in LANGUAGES


def request_language(request: Request) -> tuple[str, bool]:
    return language(request.headers.raw, request.scope.get("query_string", b""))


def html(template: str, lang: str, principal: Principal | None, path: str, csrf: str = "", **values) -> str:
    tr = Translator(lang)
    return _env.get_template(template).render(
        t=tr.t, tr=tr, lang=lang, languages=LANGUAGES, me=principal, path=path, csrf=csrf, version=__version__,
        nav=visible(principal), may=lambda method, p: may(principal, method, p), **values)


async def page(request: Request, template: str, status: int = 200, **values) -> HTMLResponse:
    """The page, rendered in a worker thread: a long table takes milliseconds to render, which the
    event loop — and every stream in flight on it — must not wait for."""
    lang, chosen = request_language(request)
    principal = getattr(request.state, "principal", None)
    sid = getattr(request.state, "session", None)
    csrf = request.app.state.governance.sessions.csrf(sid) if sid else ""
    text = await off_loop(html, template, lang, principal, request.url.path, csrf, **values)
    response = HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)
    if chosen:
        remember_language(response, lang)
    return response


def remember_language(response, lang: str) -> None:
    response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict", path="/")
