"""Governance on the request path: identities and keys, roles, and the admin operations."""

from .auth import ANONYMOUS, Authenticator, Principal
from .policy import BUILTIN_ROLES, PERMISSIONS, Policy, Role, route_permission
from .service import Governance

__all__ = ["ANONYMOUS", "Authenticator", "BUILTIN_ROLES", "Governance", "PERMISSIONS", "Policy", "Principal", "Role",
           "route_permission"]
