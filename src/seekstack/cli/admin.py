"""`seekstack keys|users|teams|roles …`: the admin API from the terminal, with --json."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import ApiKeyOption, ConfigOption, JsonOption, UrlOption, connect, console

out = console()

keys = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
users = typer.Typer(help="Users: each belongs to one team and has one role.", no_args_is_help=True)
teams = typer.Typer(help="Teams (tenants): usage, keys and audit are separated by team.", no_args_is_help=True)
limits = typer.Typer(help="Rate limits and token budgets per key, user or team.", no_args_is_help=True)
roles = typer.Typer(help="Roles and their permissions (six built in, more from `roles:` in the config).", no_args_is_help=True)


def _print(data, as_json: bool, title: str, columns: list[str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in data:
        table.add_row(*[_cell(row.get(col)) for col in columns])
    out.print(table)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(value)
    if isinstance(value, float) and value > 1e9:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    return str(value)


@keys.command("create")
def keys_create(
    name: str = typer.Option("", "--name", help="A label for the key (who or what uses it)."),
    user: Optional[str] = typer.Option(None, "--user", help="Owner (default: the caller)."),
    models: list[str] = typer.Option(["*"], "--model", help="Allowed model pattern; repeat for several (e.g. 'deepseek-r1*')."),
    endpoints: list[str] = typer.Option(["*"], "--endpoint", help="Allowed path pattern; repeat for several (e.g. '/v1/chat/*')."),
    expires_in_days: Optional[float] = typer.Option(None, "--expires-in-days", help="Expire after this many days."),
    role: str = typer.Option("least", "--role", help="The key's role: `least` (the default: the least-privileged "
                                                      "role its user holds), a role no greater than the user's, or "
                                                      "`user` for the user's own role."),
    url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
    as_json: bool = JsonOption,
) -> None:
    """Create an API key. It is printed once; only its hash is kept."""
    created = connect(url, key, config, "security").request("POST", "/admin/v1/keys", {
        "name": name, "user": user, "models": models, "endpoints": endpoints, "expires_in_days": expires_in_days,
        "role": None if role == "user" else role})
    if as_json:
        print(json.dumps(created, indent=2))
        return
    out.print(f"key [bold]{created['id']}[/] for {created['user']} (team {created['team']}, role {created['role']}):")
    print(created["key"])
    out.print("[dim]store it now; it is not shown again[/]")


@keys.command("list")
def keys_list(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
              as_json: bool = JsonOption) -> None:
    """List keys (ids and metadata; never the secrets)."""
    data = connect(url, key, config, "security").get("/admin/v1/keys")["data"]
    _print(data, as_json, "keys", ["id", "name", "user", "team", "role", "models", "expires", "revoked", "last_used"])


@keys.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (from `keys list`)."),
                url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
                as_json: bool = JsonOption) -> None:
    """Revoke a key at once."""
    revoked = connect(url, key, config, "security").request("DELETE", f"/admin/v1/keys/{key_id}")
    if as_json:
        print(json.dumps(revoked, indent=2))
    else:
        out.print(f"revoked key {revoked['id']}")


@users.command("create")
def users_create(name: str = typer.Argument(..., help="User name."),
                 role: str = typer.Option(..., "--role", help="A role from `seekstack roles list`."),
                 team: Optional[str] = typer.Option(None, "--team", help="Team (default: the caller's)."),
                 local: bool = typer.Option(False, "--local", help="On the gateway's host: write the user, with any "
                                            "role, and its first key straight into the state directory (for roles "
                                            "no one may give through the API, such as another auditor)."),
                 url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
                 as_json: bool = JsonOption) -> None:
    """Create a user in a team with a role (the caller must hold every permission of the role)."""
    if local:
        from ..config import load_settings
        from ..governance.service import provision_locally

        secret = provision_locally(load_settings(config), name, role, team or "default")
        if as_json:
            print(json.dumps({"name": name, "team": team or "default", "role": role, "key": secret}, indent=2))
            return
        out.print(f"user [bold]{name}[/] (team {team or 'default'}, role {role}) and its first key:")
        print(secret)
        out.print("[dim]store it now; it is not shown again[/]")
        return
    user = connect(url, key, config, "security").request("POST", "/admin/v1/users", {"name": name, "role": role, "team": team})
    _print([user], as_json, "user created", ["name", "team", "role"])


@users.command("list")
def users_list(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
               as_json: bool = JsonOption) -> None:
    """List users you may see."""
    _print(connect(url, key, config, "security").get("/admin/v1/users")["data"], as_json, "users", ["name", "team", "role", "created"])


@teams.command("create")
def teams_create(name: str = typer.Argument(..., help="Team name."),
                 url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
                 as_json: bool = JsonOption) -> None:
    """Create a team (global administrators only)."""
    _print([connect(url, key, config, "security").request("POST", "/admin/v1/teams", {"name": name})], as_json, "team created", ["name"])


@teams.command("list")
def teams_list(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
               as_json: bool = JsonOption) -> None:
    """List teams you may see."""
    _print(connect(url, key, config, "security").get("/admin/v1/teams")["data"], as_json, "teams", ["name", "created"])


@roles.command("list")
def roles_list(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
               as_json: bool = JsonOption) -> None:
    """List roles with their permissions, resources and scope."""
    _print(connect(url, key, config).get("/admin/v1/roles")["data"], as_json, "roles",
           ["name", "scope", "permissions", "resources", "description"])


@limits.command("set")
def limits_set(
    scope: str = typer.Argument(..., help="key, user or team."),
    name: str = typer.Argument(..., help="The key id, user name or team name."),
    rpm: Optional[int] = typer.Option(None, "--rpm", help="Requests per minute."),
    tpm: Optional[int] = typer.Option(None, "--tpm", help="Tokens per minute (prompt + completion, reasoning included)."),
    concurrent: Optional[int] = typer.Option(None, "--concurrent", help="Requests in flight at once."),
    daily_tokens: Optional[int] = typer.Option(None, "--daily-tokens", help="Tokens per UTC day."),
    monthly_tokens: Optional[int] = typer.Option(None, "--monthly-tokens", help="Tokens per UTC month."),
    url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
    as_json: bool = JsonOption,
) -> None:
    """Set the limits of a key, user or team (unset options mean no limit)."""
    row = connect(url, key, config, "security").request("PUT", "/admin/v1/limits", {
        "scope": scope, "name": name, "rpm": rpm, "tpm": tpm, "concurrent": concurrent,
        "daily_tokens": daily_tokens, "monthly_tokens": monthly_tokens})
    _print([row], as_json, "limits set", LIMIT_COLUMNS)


@limits.command("list")
def limits_list(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
                as_json: bool = JsonOption) -> None:
    """List the limits you may see."""
    _print(connect(url, key, config, "security").get("/admin/v1/limits")["data"], as_json, "limits", LIMIT_COLUMNS)


LIMIT_COLUMNS = ["scope", "name", "rpm", "tpm", "concurrent", "daily_tokens", "monthly_tokens"]


def usage(since: Optional[str] = typer.Option(None, "--since", help="From this day (YYYY-MM-DD)."),
          url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
          as_json: bool = JsonOption) -> None:
    """Usage per day, key, user, team and model (your team's, unless you are a global role)."""
    path = "/admin/v1/usage" + (f"?since={since}" if since else "")
    _print(connect(url, key, config, "security").get(path)["data"], as_json, "usage",
           ["day", "team", "user", "key_id", "model", "requests", "prompt_tokens", "completion_tokens", "reasoning_tokens"])


def gateways(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
             as_json: bool = JsonOption) -> None:
    """The gateways sharing this server's governance database: serving, silent (killed, hung or cut
    off: not seen for 30 s) or stopped, with their hosts, versions, audit directories and the
    settings sections in which each differs from the other serving gateways."""
    _print(connect(url, key, config).get("/admin/v1/gateways")["data"], as_json, "gateways",
           ["writer", "state", "host", "address", "version", "started", "seen", "audit_dir", "differs"])
