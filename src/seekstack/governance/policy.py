"""Who may do what: permissions, roles and the endpoint → permission map, all as data.

Deny by default: a request is allowed only when its route has a permission here and the
caller's role grants it on the resource (a model name, or ``*``). Roles grant patterns
(``inference:*``, ``deepseek-r1*``) matched with :func:`fnmatch`.

A role's ``scope`` says whose objects its management permissions reach: ``global`` roles
act on every team; ``team`` roles only on their own team's keys, usage and users. Tenant
identity comes from the key, never from the request.

Duties are separated: the system ``admin`` runs models and configuration; the
``security_admin`` manages people, keys and roles; only the ``auditor`` reads the audit
log, and no role can change it. No role — built in or custom — holds two duties
(``DUTIES``), and no sequence of admin calls lets anyone obtain a permission
they do not hold (:meth:`Role.holds`, enforced by the governance service):

- a key carries its user's role or a lesser one, and is minted only by a caller whose role
  holds the key's role entirely (for oneself too: a lesser key cannot mint a greater one);
- a user is given a role only by a caller whose role holds it entirely;
- a limit remembers the rank (global over team) of whoever imposed it, and only a caller of
  that rank or above may loosen it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

PERMISSIONS: dict[str, str] = {
    "inference:chat": "POST /v1/chat/completions",
    "inference:completions": "POST /v1/completions",
    "inference:embeddings": "POST /v1/embeddings",
    "inference:rerank": "POST /v1/rerank",
    "models:read": "list models",
    "models:manage": "see and manage engine replicas",
    "keys:manage": "create, list and revoke API keys",
    "users:manage": "create and list users and teams",
    "roles:read": "list roles and their permissions",
    "quotas:manage": "set and list rate limits and token budgets",
    "usage:read": "read usage records",
    "audit:read": "read, verify and export the audit log",
    "metrics:read": "read metrics",
    "config:manage": "read and change configuration",
    "scale:read": "see the autoscaler: rules, utilisation, decisions",
    "scale:manage": "change replica counts and autoscaling bounds",
    "rollout:read": "see canary and blue-green rollouts",
    "rollout:manage": "start, promote and abort rollouts",
}

# (method, path) → permission; paths with {x} match one segment. Unlisted routes are denied.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/chat/completions"): "inference:chat",
    ("POST", "/v1/completions"): "inference:completions",
    ("POST", "/v1/embeddings"): "inference:embeddings",
    ("POST", "/v1/rerank"): "inference:rerank",
    ("GET", "/v1/models"): "models:read",
    ("POST", "/api/chat"): "inference:chat",                # Ollama's API: the same permissions as /v1
    ("POST", "/api/generate"): "inference:completions",
    ("POST", "/api/embed"): "inference:embeddings",
    ("GET", "/api/tags"): "models:read",
    ("POST", "/api/show"): "models:read",
    ("GET", "/api/ps"): "models:read",
    ("GET", "/api/version"): "self",
    ("GET", "/admin/v1/replicas"): "models:manage",
    ("GET", "/admin/v1/deployments"): "models:manage",
    ("GET", "/admin/v1/gateways"): "models:manage",
    ("POST", "/admin/v1/models/{id}/load"): "models:manage",
    ("POST", "/admin/v1/models/{id}/unload"): "models:manage",
    ("POST", "/admin/v1/models/{id}/scale"): "scale:manage",
    ("GET", "/admin/v1/autoscaler"): "scale:read",
    ("PUT", "/admin/v1/autoscaler/{id}"): "scale:manage",
    ("GET", "/admin/v1/rollouts"): "rollout:read",
    ("POST", "/admin/v1/rollouts"): "rollout:manage",
    ("POST", "/admin/v1/rollouts/{id}/promote"): "rollout:manage",
    ("POST", "/admin/v1/rollouts/{id}/abort"): "rollout:manage",
    ("GET", "/admin/v1/keys"): "self",          # one's own keys; keys:manage: the team's or everyone's
    ("POST", "/admin/v1/keys"): "self",
    ("DELETE", "/admin/v1/keys/{id}"): "self",
    ("GET", "/admin/v1/users"): "users:manage",
    ("POST", "/admin/v1/users"): "users:manage",
    ("PUT", "/admin/v1/users/{id}/password"): "self",   # one's own; users:manage: a team's or everyone's
    ("GET", "/admin/v1/teams"): "users:manage",
    ("POST", "/admin/v1/teams"): "users:manage",
    ("GET", "/admin/v1/roles"): "roles:read",
    ("GET", "/admin/v1/limits"): "quotas:manage",
    ("PUT", "/admin/v1/limits"): "quotas:manage",
    ("GET", "/admin/v1/usage"): "usage:read",
    ("GET", "/admin/v1/audit"): "audit:read",
    ("GET", "/admin/v1/audit/verify"): "audit:read",
    ("GET", "/admin/v1/audit/bodies/{id}"): "audit:read",
    ("POST", "/admin/v1/retention/run"): "config:manage",
    ("POST", "/admin/v1/config/reload"): "config:manage",
    ("GET", "/admin/v1/whoami"): "self",
    ("GET", "/openapi.json"): "self",
    ("GET", "/metrics"): "metrics:read",
    # the web console: its pages need what the API behind them needs; its writes are API calls
    ("POST", "/console/session"): "self",           # sign in: a key (Bearer) or a password (Basic)
    ("POST", "/console/signout"): "self",
    ("GET", "/console"): "self",
    ("GET", "/console/playground"): "inference:chat",
    ("GET", "/console/models"): "models:read",
    ("GET", "/console/keys"): "self",
    ("GET", "/console/users"): "users:manage",
    ("GET", "/console/roles"): "roles:read",
    ("GET", "/console/limits"): "quotas:manage",
    ("GET", "/console/usage"): "usage:read",
    ("GET", "/console/usage.csv"): "usage:read",
    ("GET", "/console/audit"): "audit:read",
    ("GET", "/console/audit/verify"): "audit:read",
    ("GET", "/console/audit/export"): "audit:read",
    ("GET", "/console/audit/records/{id}"): "audit:read",
    ("GET", "/console/planner"): "self",
}
OPEN_ROUTES = frozenset({("GET", "/healthz"), ("GET", "/readyz"),  # probes: no key
                         ("GET", "/console/signin")})              # the sign-in page itself
OPEN_PREFIXES = ("/console/static/",)  # the console's stylesheet, script and icons: no key, nothing secret


# The three duties: no role, built in or custom, holds permissions of two of them.
DUTIES: dict[str, frozenset[str]] = {
    "system": frozenset({"models:manage", "config:manage", "scale:manage", "rollout:manage"}),
    "security": frozenset({"keys:manage", "users:manage", "quotas:manage"}),
    "audit": frozenset({"audit:read"}),
}
RANKS = {"team": 1, "global": 2}


def expand(patterns: tuple[str, ...]) -> frozenset[str]:
    """The concrete permissions a tuple of patterns grants."""
    return frozenset(p for p in PERMISSIONS if any(fnmatchcase(p, q) for q in patterns))


@dataclass(frozen=True)
class Role:
    name: str
    permissions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    scope: str = "team"  # "global" | "team"
    description: str = ""

    def grants(self, permission: str, resource: str = "*") -> bool:
        if permission == "self":
            return True
        if not any(fnmatchcase(permission, p) for p in self.permissions):
            return False
        return resource == "*" or self.covers(resource)

    def covers(self, resource: str) -> bool:
        return any(fnmatchcase(resource, r) for r in self.resources)

    @property
    def rank(self) -> int:
        return RANKS[self.scope]

    @property
    def granted(self) -> frozenset[str]:
        return expand(self.permissions)

    def holds(self, other: "Role") -> bool:
        """Whether everything ``other`` grants, this role grants too: permissions, models and reach."""
        return (other.granted <= self.granted and other.rank <= self.rank
                and all(self.covers(r) for r in other.resources))

    def duties(self) -> set[str]:
        return {name for name, permissions in DUTIES.items() if permissions & self.granted}

    def lacks(self, other: "Role") -> str:
        """What ``other`` grants that this role does not, in words (for a refusal)."""
        missing = sorted(other.granted - self.granted)
        if missing:
            return ", ".join(missing)
        if other.rank > self.rank:
            return f"{other.scope} reach"
        return "models " + ", ".join(r for r in other.resources if not self.covers(r))


BUILTIN_ROLES: dict[str, Role] = {r.name: r for r in (
    Role("admin", ("inference:*", "models:*", "scale:*", "rollout:*", "roles:read", "usage:read", "metrics:read", "config:manage"),
         scope="global", description="runs the system: models, replicas and configuration; not people, not the audit log"),
    Role("security_admin", ("keys:manage", "users:manage", "roles:read", "quotas:manage", "usage:read", "inference:*",
                            "models:read", "metrics:read"), scope="global",
         description="people, teams, keys and limits; may use models, since it issues keys that do; "
                     "not the system's configuration, not the audit log"),
    Role("auditor", ("audit:read", "roles:read"), scope="global",
         description="reads, verifies and exports the audit log; nothing else"),
    Role("model_operator", ("models:*", "scale:*", "rollout:*", "metrics:read", "inference:*"), scope="global",
         description="runs models and replicas (how many, which version), reads metrics"),
    Role("data_analyst", ("inference:*", "models:read", "usage:read", "metrics:read"),
         description="uses models, reads own team's usage"),
    Role("api_consumer", ("inference:*", "models:read"),
         description="uses models"),
)}


@dataclass
class Policy:
    roles: dict[str, Role] = field(default_factory=lambda: dict(BUILTIN_ROLES))

    @classmethod
    def with_custom(cls, custom: dict[str, dict]) -> "Policy":
        roles = dict(BUILTIN_ROLES)
        for name, spec in custom.items():
            roles[name] = Role(name, tuple(spec.get("permissions", ())), tuple(spec.get("resources", ("*",))),
                               spec.get("scope", "team"), spec.get("description", "custom role"))
        return cls(roles)

    def role(self, name: str) -> Role | None:
        return self.roles.get(name)

    def least_held_by(self, role: Role) -> Role:
        """The built-in role with the fewest permissions that ``role`` holds (itself when none is smaller)."""
        held = [r for r in BUILTIN_ROLES.values() if role.holds(r)]
        return min(held, key=lambda r: (len(r.granted), r.name)) if held else role


def mixed_duties(role: Role) -> str | None:
    """Why a role may not exist — it holds two duties' permissions — or None."""
    duties = role.duties()
    if len(duties) > 1:
        return f"role {role.name!r} combines the {' and '.join(sorted(duties))} duties"
    return None


def route_pattern(method: str, path: str) -> str | None:
    """The ROUTES pattern ``path`` matches (``/admin/v1/keys/{id}``), or None when unknown."""
    if (method, path) in ROUTES:
        return path
    parts = path.split("/")
    for (m, pattern) in ROUTES:
        if m != method or "{" not in pattern:
            continue
        pparts = pattern.split("/")
        if len(pparts) == len(parts) and all(p == q or p.startswith("{") for p, q in zip(pparts, parts)):
            return pattern
    return None


def route_permission(method: str, path: str) -> str | None:
    """The permission a route needs; None when the route is unknown (denied)."""
    pattern = route_pattern(method, path)
    return None if pattern is None else ROUTES[(method, pattern)]


def role_table() -> str:
    """The built-in role × endpoint table (markdown); docs/security.md embeds it, a test keeps it equal."""
    roles = list(BUILTIN_ROLES.values())
    lines = ["| endpoint | permission | " + " | ".join(r.name for r in roles) + " |",
             "|---|---|" + "---|" * len(roles)]
    for (method, path), permission in ROUTES.items():
        cells = ["allow" if r.grants(permission) else "—" for r in roles]
        lines.append(f"| `{method} {path}` | `{permission}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_role_table(doc_path: str) -> None:
    """Regenerate the role table block of a markdown file (``make docs``)."""
    from ..markdown import replace_block

    replace_block(doc_path, "role-table", role_table())
