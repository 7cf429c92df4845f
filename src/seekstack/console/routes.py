"""The console's routes: pages rendered on the server from what the admin API would answer.

Thin: each page gathers its data from the same services as the API (off the event loop
where it reads the database) and renders a template. The guard in front has already
authenticated the person (API key or session), checked the page's permission and written
the audit record. Writes are not here: the page's script calls the API itself
(``/admin/v1/…``, ``/v1/chat/completions``) with the session's CSRF token.
"""

from __future__ import annotations

import csv
import datetime
import io
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..errors import InvalidRequestError, NotFoundError
from ..governance.audit_verify import verify_in_subprocess
from ..governance.pii import policy_for
from ..governance.passwords import SESSION_KEY_NAME
from ..governance.sessions import COOKIE
from ..threads import off_loop
from . import charts
from .i18n import Translator
from .pages import may
from .render import SECURITY_HEADERS, page, request_language

router = APIRouter(prefix="/console", include_in_schema=False)
STATIC = Path(__file__).parent / "static"
AUDIT_PAGE = 200            # records shown on the audit page
AUDIT_EXPORT = 100_000      # records in one export


def _gov(request: Request):
    return request.app.state.governance


def _tr(request: Request) -> Translator:
    return Translator(request_language(request)[0])


# ------------------------------------------------------------ signing in and out
@router.get("/signin")
async def signin(request: Request, next: str = "/console"):
    return await page(request, "signin.html", next=_local(next), auth=request.app.state.settings.auth.enabled)


@router.post("/session")
async def open_session(request: Request) -> Response:
    """Sign in: the guard has proven the key (Bearer) or the user's password (Basic) in the
    Authorization header. The session carries the key's id — for a password, a key minted for
    the session, which its sign-out revokes. A session the browser still holds ends: one
    browser, one session."""
    principal = request.state.principal
    response = JSONResponse({"user": principal.user, "role": principal.role.name}, headers=SECURITY_HEADERS)
    if request.app.state.settings.auth.enabled:
        if (old := _cookie(request)) is not None:  # signing in again: the browser's last session ends
            await off_loop(_gov(request).replace_session, old)
        kid = principal.key_id if principal.via == "key" else \
            await off_loop(_gov(request).mint_session_key, principal)
        token = await off_loop(_gov(request).sessions.open, kid)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.app.state.settings.server.tls is not None)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End the session everywhere (the database is shared), and forget the cookie here."""
    token = _cookie(request)
    if token is not None:
        await off_loop(_gov(request).end_session, token, request.state.principal.key_id)
    response = JSONResponse({"signed_out": True}, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFoundError(f"no console file {name!r}")
    return FileResponse(path, headers={"x-content-type-options": "nosniff", "cache-control": "max-age=3600"})


# ------------------------------------------------------------ pages
@router.get("")
async def overview(request: Request):
    me = request.state.principal
    registry = request.app.state.registry
    models = [{"alias": a, "state": registry.state(a)} for a in registry.aliases() if me.may_use_model(a)]
    return await page(request, "overview.html", models=models)


@router.get("/playground")
async def playground(request: Request):
    me = request.state.principal
    settings = request.app.state.settings
    models = [{"alias": a, "pii": policy_for(settings.pii, me.key_id, me.team, a)}
              for a in request.app.state.registry.aliases() if me.may_use_model(a) and _chats(settings.model(a))]
    return await page(request, "playground.html", models=models)


def _chats(model) -> bool:
    """The playground chats: embedding models and rerankers are not offered there."""
    return model is None or model.task == "chat"


@router.get("/models")
async def models(request: Request):
    """Each deployment as /healthz tells it; its replicas as /admin/v1/replicas does (``models:manage``);
    rollouts as /admin/v1/rollouts does (``rollout:read``); the gateways on the governance database
    as /admin/v1/gateways does (``models:manage``)."""
    me = request.state.principal
    registry = request.app.state.registry
    replicas = may(me, "GET", "/admin/v1/replicas")
    shown = [d for d in registry.deployments() if me.may_use_model(d.alias)]
    described = await off_loop(lambda: [[e.describe() for e in d.endpoints] for d in shown]) if replicas \
        else [[] for _ in shown]  # one trip to a thread (a replica's memory is read from /proc)
    sleeping = request.app.state.router.sleeping  # unloaded, loaded by the next request (keep_alive)
    settings = request.app.state.settings
    deployments = [{**d.describe(), "replicas": r, "on_demand": d.alias in sleeping,
                    **_serving(settings.model(d.alias), me)} for d, r in zip(shown, described)]
    rollouts = [r for r in request.app.state.rollouts.describe() if me.may_use_model(r["model"])] \
        if may(me, "GET", "/admin/v1/rollouts") else None
    gateways = await off_loop(_gov(request).gateways) if may(me, "GET", "/admin/v1/gateways") else None
    return await page(request, "models.html", deployments=deployments, rollouts=rollouts, replicas=replicas,
                      gateways=gateways)


def _serving(model, me) -> dict:
    """What the model serves, and the models that answer in its place and when — those this viewer may use."""
    if model is None:
        return {"task": None, "fallbacks": [], "fallback_on": []}
    return {"task": model.task, "fallbacks": [name for name in model.fallbacks if me.may_use_model(name)],
            "fallback_on": model.fallback_on}


@router.get("/keys")
async def keys(request: Request):
    me = request.state.principal
    gov = _gov(request)
    records = await off_loop(gov.list_keys, me)
    roles = [name for name, role in gov.policy.roles.items() if me.role.holds(role)]
    now = time.time()
    live = [k for k in reversed(records)  # an ended password session's key is noise here (the API still lists it)
            if k.name != SESSION_KEY_NAME or k.live(now)]
    return await page(request, "keys.html", keys=[k.public() for k in live], roles=roles, now=now)


@router.get("/users")
async def users(request: Request):
    me = request.state.principal
    gov = _gov(request)
    people = await off_loop(gov.list_users, me)
    teams = await off_loop(gov.list_teams, me)
    roles = [name for name, role in gov.policy.roles.items() if me.role.holds(role)]
    return await page(request, "users.html", users=people, teams=teams, roles=roles)


@router.get("/roles")
async def roles(request: Request):
    return await page(request, "roles.html", roles=list(_gov(request).policy.roles.values()))


@router.get("/limits")
async def limits(request: Request):
    rows = await off_loop(_gov(request).list_limits, request.state.principal)
    return await page(request, "limits.html", limits=rows)


@router.get("/usage")
async def usage(request: Request, since: Optional[str] = None):
    since = since or (datetime.date.today() - datetime.timedelta(days=29)).isoformat()
    rows = await _usage_rows(request, since)
    tr = _tr(request)
    days = sorted({r["day"] for r in rows})
    per_day = {d: [0, 0] for d in days}
    for r in rows:
        per_day[r["day"]][0] += r["prompt_tokens"]
        per_day[r["day"]][1] += r["completion_tokens"]
    daily = charts.columns([tr.day(d) for d in days],
                           [(tr.t("usage.prompt_tokens"), [per_day[d][0] for d in days]),
                            (tr.t("usage.completion_tokens"), [per_day[d][1] for d in days])],
                           tr, tr.t("usage.chart_daily"))
    by = {}
    for field, title, colour in (("team", "usage.by_team", 3), ("key_id", "usage.by_key", 1), ("model", "usage.by_model", 2)):
        totals: dict[str, int] = {}
        for r in rows:
            totals[r[field]] = totals.get(r[field], 0) + r["prompt_tokens"] + r["completion_tokens"]
        top = sorted(totals.items(), key=lambda kv: -kv[1])[:10]  # the ten largest
        by[field] = charts.hbars(top, tr, tr.t(title), series=colour)
    return await page(request, "usage.html", rows=rows, since=since, daily=daily, by=by)


@router.get("/usage.csv")
async def usage_csv(request: Request, since: Optional[str] = None) -> Response:
    rows = await _usage_rows(request, since)
    out = io.StringIO()
    columns = ("day", "team", "user", "key_id", "model", "requests", "prompt_tokens", "completion_tokens",
               "reasoning_tokens")
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in columns])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={**SECURITY_HEADERS, "content-disposition": 'attachment; filename="seekstack-usage.csv"'})


@router.get("/audit")
async def audit(request: Request, since: Optional[str] = None, until: Optional[str] = None,
                team: Optional[str] = None, key_id: Optional[str] = None, event: Optional[str] = None,
                before: Optional[int] = Query(None, ge=1), limit: int = Query(AUDIT_PAGE, ge=1, le=1000)):
    """The newest ``limit`` matching records (before record ``before``: the next page back)."""
    query = _audit_query(since, until, team, key_id, event)
    records = await off_loop(_gov(request).audit_records, request.state.principal, limit=limit,
                              before_seq=before, newest_first=True, **query)
    form = {"since": since or "", "until": until or "", "team": team or "", "key_id": key_id or "", "event": event or ""}
    older = urlencode({**form, "before": records[-1]["seq"], "limit": limit}) if len(records) == limit else None
    return await page(request, "audit.html", records=records, form=form, shown=limit, older=older)


@router.get("/audit/records/{seq}")
async def audit_record(seq: str, request: Request):
    if not seq.isdigit():
        raise NotFoundError(f"no audit record {seq!r}")
    found = await off_loop(_gov(request).audit_records, request.state.principal, seq=int(seq), limit=1)
    if not found:
        raise NotFoundError(f"no audit record {seq}", fix="records are kept for the retention time")
    return await page(request, "audit_record.html", record=found[0])


@router.get("/audit/verify")
async def audit_verify(request: Request):
    verdict = await verify_in_subprocess(_gov(request).audit.path.parent)
    return await page(request, "audit_verify.html", verdict=verdict)


@router.get("/audit/export")
async def audit_export(request: Request, since: Optional[str] = None, until: Optional[str] = None,
                       team: Optional[str] = None, key_id: Optional[str] = None,
                       event: Optional[str] = None) -> Response:
    query = _audit_query(since, until, team, key_id, event)
    records = await off_loop(_gov(request).audit_records, request.state.principal, limit=AUDIT_EXPORT, **query)
    body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    return Response(body, media_type="application/x-ndjson",
                    headers={**SECURITY_HEADERS,
                             "content-disposition": 'attachment; filename="seekstack-audit.jsonl"'})


@router.get("/planner")
async def planner(request: Request):
    from .planning import plan_form

    result = await off_loop(plan_form, dict(request.query_params), _tr(request))
    return await page(request, "planner.html", **result)


# ------------------------------------------------------------ helpers
def _cookie(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def _local(target: str) -> str:
    """A sign-in's next page: only a console page of this server (never another site)."""
    return target if target.startswith("/console") and "//" not in target and "\\" not in target else "/console"


async def _usage_rows(request: Request, since: str | None) -> list[dict]:
    gov = _gov(request)
    await gov.flush_off_loop()
    return await off_loop(gov.usage, request.state.principal, since_day=since)


def _audit_query(since, until, team, key_id, event) -> dict:
    def day(value: str | None, name: str, end: bool = False) -> float | None:
        if not value:
            return None
        try:
            start = datetime.datetime.fromisoformat(value).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            raise InvalidRequestError(f"{name} {value!r} is not a date", fix="use YYYY-MM-DD", param=name) from None
        return (start + datetime.timedelta(days=1 if end and len(value) == 10 else 0)).timestamp()

    filters = {k: v for k, v in {"team": team, "key_id": key_id, "event": event}.items() if v}
    return {"since": day(since, "since"), "until": day(until, "until", end=True), "filters": filters}


def _cell(value):
    """A CSV cell no spreadsheet runs as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
