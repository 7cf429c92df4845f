"""Admin API under /admin/v1: keys, users, teams, roles. Thin: the governance service decides.

Every call that reads or writes the governance database runs in a worker thread
(:func:`~seekstack.threads.off_loop`): a slow query, or a PostgreSQL across the network, never stalls the
streams in flight."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ..governance.audit_verify import verify_in_subprocess
from ..threads import off_loop

router = APIRouter(prefix="/admin/v1")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewKey(_Body):
    name: str = Field("", max_length=200)
    user: Optional[str] = None
    models: list[str] = ["*"]
    endpoints: list[str] = ["*"]
    expires_in_days: Optional[float] = None
    role: Optional[str] = Field(None, description="the key's role: its user's when unset; a lesser role; or `least`, "
                                                  "the least-privileged built-in role the user's role holds")


class NewUser(_Body):
    name: str
    role: str
    team: Optional[str] = None


class NewPassword(_Body):
    password: str = Field(description="the user's console password: 12 to 256 characters")


class NewTeam(_Body):
    name: str


class SetLimits(_Body):
    scope: str = Field(description="key, user or team")
    name: str = Field(description="the key id, user name or team name")
    rpm: Optional[int] = Field(None, ge=0)
    tpm: Optional[int] = Field(None, ge=0)
    concurrent: Optional[int] = Field(None, ge=0)
    daily_tokens: Optional[int] = Field(None, ge=0)
    monthly_tokens: Optional[int] = Field(None, ge=0)


def _gov(request: Request):
    return request.app.state.governance


@router.get("/whoami")
async def whoami(request: Request) -> dict:
    p = request.state.principal
    return {"key_id": p.key_id, "user": p.user, "team": p.team, "role": p.role.name,
            "permissions": list(p.role.permissions), "models": list(p.models), "endpoints": list(p.endpoints)}


@router.get("/gateways")
async def list_gateways(request: Request) -> dict:
    """The gateways sharing this governance database: serving, silent (not seen for 30 s) or stopped."""
    return {"object": "list", "data": await off_loop(_gov(request).gateways)}


@router.get("/keys")
async def list_keys(request: Request) -> dict:
    return {"object": "list", "data": [k.public() for k in await off_loop(_gov(request).list_keys, request.state.principal)]}


@router.post("/keys", status_code=201)
async def create_key(body: NewKey, request: Request) -> dict:
    record, key = await off_loop(_gov(request).create_key, request.state.principal, user=body.user, name=body.name,
                                           models=body.models, endpoints=body.endpoints,
                                           expires_in_days=body.expires_in_days, role=body.role)
    return {**record.public(), "key": key, "note": "store this key now; it is not shown again"}


@router.delete("/keys/{kid}")
async def revoke_key(kid: str, request: Request) -> dict:
    return (await off_loop(_gov(request).revoke_key, request.state.principal, kid)).public()


@router.get("/users")
async def list_users(request: Request) -> dict:
    return {"object": "list", "data": await off_loop(_gov(request).list_users, request.state.principal)}


@router.post("/users", status_code=201)
async def create_user(body: NewUser, request: Request) -> dict:
    return await off_loop(_gov(request).create_user, request.state.principal, name=body.name, team=body.team, role=body.role)


@router.put("/users/{name}/password")
async def set_password(name: str, body: NewPassword, request: Request) -> dict:
    """A user's console password (sign-in only; the API wants keys): one's own, or with users:manage
    that of a user whose role the caller holds entirely. The password is never stored, only its hash."""
    return await off_loop(_gov(request).set_password, request.state.principal, name, body.password)


@router.get("/teams")
async def list_teams(request: Request) -> dict:
    return {"object": "list", "data": await off_loop(_gov(request).list_teams, request.state.principal)}


@router.post("/teams", status_code=201)
async def create_team(body: NewTeam, request: Request) -> dict:
    return await off_loop(_gov(request).create_team, request.state.principal, body.name)


@router.get("/roles")
async def list_roles(request: Request) -> dict:
    return {"object": "list", "data": [
        {"name": r.name, "permissions": list(r.permissions), "resources": list(r.resources), "scope": r.scope,
         "description": r.description} for r in _gov(request).policy.roles.values()]}


@router.get("/limits")
async def list_limits(request: Request) -> dict:
    return {"object": "list", "data": await off_loop(_gov(request).list_limits, request.state.principal)}


@router.put("/limits")
async def set_limits(body: SetLimits, request: Request) -> dict:
    values = body.model_dump(exclude={"scope", "name"})
    return await off_loop(_gov(request).set_limits, request.state.principal, body.scope, body.name, values)


@router.get("/usage")
async def usage(request: Request, since: Optional[str] = None) -> dict:
    """Usage per day, key, user, team and model; ``since`` is a day (YYYY-MM-DD). The batch not yet
    written is written first, so the answer counts every request finished so far."""
    await _gov(request).flush_off_loop()
    return {"object": "list", "data": await off_loop(_gov(request).usage, request.state.principal, since_day=since)}


@router.get("/audit")
async def audit_records(request: Request, since: Optional[float] = None, until: Optional[float] = None,
                        team: Optional[str] = None, key_id: Optional[str] = None, event: Optional[str] = None,
                        limit: int = Query(1000, ge=1, le=10000)) -> dict:
    """Audit records (metadata only), oldest first; ``since``/``until`` are Unix times. Read in a worker
    thread, through a connection of its own: a long read never stalls the streams in flight."""
    filters = {k: v for k, v in {"team": team, "key_id": key_id, "event": event}.items() if v}
    return {"object": "list", "data": await off_loop(_gov(request).audit_records, request.state.principal,
                                                     since=since, until=until, filters=filters, limit=limit)}


@router.get("/audit/verify")
async def audit_verify(request: Request) -> dict:
    verdict = await verify_in_subprocess(_gov(request).audit.path.parent)  # off the loop and off its process
    return verdict.__dict__


@router.get("/audit/bodies/{request_id}")
async def audit_body(request_id: str, request: Request) -> dict:
    """A captured body, decrypted (auditors only; needs audit.capture_bodies)."""
    return await off_loop(_gov(request).audit_body, request.state.principal, request_id)


@router.post("/retention/run")
async def retention_run(request: Request) -> dict:
    """Apply the retention policy now (it also runs daily); returns what was deleted."""
    return await _gov(request).run_retention()
