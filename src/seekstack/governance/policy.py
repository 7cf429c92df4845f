"""Who may do what: permissions, roles and the endpoint → permission map, all as data.

Deny by default: a request is allowed only when its route has a permission here and the
caller's role grants it on the resource (a model name, or ``*``). Roles grant patterns
(``inference:*``, ``deepseek-r1*``) matched with :func:`fnmatch`.

A role's ``scope`` says whose objects its management permissions reach: ``global`` roles
act on every team; ``team`` roles only on their own team's keys, usage and users. Tenant
identity comes from the key, never from the request.

Duties are separated: the system ``admin`` runs models and configuration; the
``security_admin`` manages people, keys and roles; only the ``auditor`` reads the audit
log, and no role can change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

PERMISSIONS: dict[str, str] = {
    "inference:chat": "POST /v1/chat/completions",
    "inference:completions": "POST /v1/completions",
    "inference:embeddings": "POST /v1/embeddings",
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
}

# (method, path) → permission; paths with {x} match one segment. Unlisted routes are denied.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/chat/completions"): "inference:chat",
    ("POST", "/v1/completions"): "inference:completions",
    ("POST", "/v1/embeddings"): "inference:embeddings",
    ("GET", "/v1/models"): "models:read",
    ("GET", "/admin/v1/replicas"): "models:manage",
    ("GET", "/admin/v1/keys"): "keys:manage",
    ("POST", "/admin/v1/keys"): "keys:manage",
    ("DELETE", "/admin/v1/keys/{id}"): "keys:manage",
    ("GET", "/admin/v1/users"): "users:manage",
    ("POST", "/admin/v1/users"): "users:manage",
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
    ("GET", "/admin/v1/whoami"): "self",
    ("GET", "/metrics"): "metrics:read",
}
OPEN_ROUTES = frozenset({("GET", "/healthz"), ("GET", "/readyz")})  # probes: no key


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


BUILTIN_ROLES: dict[str, Role] = {r.name: r for r in (
    Role("admin", ("inference:*", "models:*", "keys:manage", "users:manage", "roles:read", "quotas:manage", "usage:read",
                   "metrics:read", "config:manage"), scope="global",
         description="runs the system: models, configuration, and (to bootstrap) people and keys; not the audit log"),
    Role("security_admin", ("keys:manage", "users:manage", "roles:read", "quotas:manage", "usage:read"), scope="global",
         description="people, teams, keys and roles; no inference, no audit log"),
    Role("auditor", ("audit:read", "roles:read"), scope="global",
         description="reads, verifies and exports the audit log; nothing else"),
    Role("model_operator", ("models:*", "metrics:read", "inference:*"), scope="global",
         description="runs models and replicas, reads metrics"),
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
