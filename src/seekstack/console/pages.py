"""The console's pages as data: where each is, and what a person must be allowed to open it.

A page's permission is the one the policy's route table gives its path — the same table the
guard enforces — so the menu shows exactly the pages a role may open, and a page left out of
the menu is refused by the guard too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SeekstackError
from ..governance.auth import Principal
from ..governance.policy import ROUTES, route_pattern


@dataclass(frozen=True)
class Page:
    name: str   # its template (``<name>.html``) and its title (``nav.<name>``)
    path: str

    @property
    def permission(self) -> str:
        return ROUTES[("GET", self.path)]


PAGES: tuple[Page, ...] = (
    Page("overview", "/console"),
    Page("playground", "/console/playground"),
    Page("models", "/console/models"),
    Page("keys", "/console/keys"),
    Page("users", "/console/users"),
    Page("roles", "/console/roles"),
    Page("limits", "/console/limits"),
    Page("usage", "/console/usage"),
    Page("audit", "/console/audit"),
    Page("planner", "/console/planner"),
)


def may(principal: Principal | None, method: str, path: str) -> bool:
    """Whether the guard would let ``principal`` call ``method path`` (its permission and endpoint allow-list)."""
    pattern = route_pattern(method, path)
    if principal is None or pattern is None:
        return False
    try:
        principal.require(ROUTES[(method, pattern)], method, path)
    except SeekstackError:
        return False
    return True


def visible(principal: Principal | None) -> list[Page]:
    return [page for page in PAGES if may(principal, "GET", page.path)]
