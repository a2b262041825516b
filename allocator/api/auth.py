"""Who is asking, and may they: bearer tokens checked against the tokens file, by role.

Each route declares the permission it needs (``Reads``, ``Allocates``, ``Administers``); the
dependency authenticates the ``Authorization: Bearer`` header, stores the ``Principal`` on
``request.state.principal`` (request logging and the audit trail name it) and refuses:

- 401 ``unauthorized`` (with ``WWW-Authenticate: Bearer``) without a token or with an unknown one;
- 403 ``forbidden`` when the token's role does not grant the permission.

A server without a tokens file is open: every request is the ``anonymous`` admin. ``allocator
serve`` then listens on loopback only unless told ``--insecure``.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from allocator.api.deps import reject_unknown_query, require_json
from allocator.domain.errors import Forbidden, Unauthorized
from allocator.domain.token import ANONYMOUS, Permission, Principal
from allocator.settings import Settings
from allocator.store.token_file import TokenFile

log = logging.getLogger(__name__)

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `allocator token create`; roles admin, allocator, reader.",
)


class Authenticator:
    """Turns the bearer token of a request into a Principal; open when it has no tokens file."""

    def __init__(self, tokens: TokenFile | None) -> None:
        self.tokens = tokens

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Read the tokens file named by the settings (OSError, TokenFileError if it cannot be)."""
        return cls(TokenFile(settings.tokens_file) if settings.tokens_file else None)

    @property
    def open(self) -> bool:
        return self.tokens is None

    def principal(self, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        """Return who presented ``credentials``; raise Unauthorized."""
        if self.tokens is None:
            return ANONYMOUS
        if credentials is None:
            raise Unauthorized("this request needs a bearer token (Authorization: Bearer ...)")
        principal = self.tokens.identify(credentials.credentials)
        if self.tokens.problem:
            log.warning("tokens file not reloaded: %s", self.tokens.problem)
        if principal is None:
            raise Unauthorized("the bearer token is not valid")
        return principal


current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
"""Who made the request being served (set by the auth dependency)."""


class PrincipalFilter(logging.Filter):
    """Adds ``principal`` and ``role`` to every record logged while serving a request: on the
    loggers of state changes this makes each change line an audit line (who, request id, what,
    revision)."""

    def filter(self, record: logging.LogRecord) -> bool:
        principal = current_principal.get()
        if principal is not None and not hasattr(record, "principal"):
            record.principal = principal.name
            record.role = str(principal.role)
        return True


def audit(logger: logging.Logger) -> None:
    """Make ``logger``'s records name the principal (once per logger)."""
    if not any(isinstance(f, PrincipalFilter) for f in logger.filters):
        logger.addFilter(PrincipalFilter())


async def admit(request: Request, permission: Permission) -> Principal:
    """Return who makes ``request``, if they may ``permission``; raise Unauthorized, Forbidden.
    The principal is kept for the request's log line and the audit trail."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.principal(await bearer(request))
    request.state.principal = principal
    current_principal.set(principal)  # the route runs in this task: its logs see it
    if not principal.may(permission):
        raise Forbidden(
            f"token {principal.name!r} (role {principal.role}) may not {permission}",
            role=str(principal.role),
            permission=str(permission),
        )
    return principal


def authorize(permission: Permission, *, json_body: bool = False) -> Any:
    """Return the one dependency of a route that needs ``permission``: it refuses unknown query
    parameters, admits principals holding ``permission`` and, with ``json_body``, refuses a body
    not declared JSON, in that order.

    One dependency, not one per check: FastAPI's resolution of each dependency costs more than
    the check itself, on every request. The bearer scheme therefore is not a sub-dependency;
    ``allocator.api.openapi`` declares it for every operation that has a ``permission``.
    """

    # async although it awaits nothing slow: FastAPI runs a sync dependency in a worker thread,
    # a hop that costs more than the check itself on every request.
    async def dependency(request: Request) -> Principal:
        reject_unknown_query(request)
        principal = await admit(request, permission)
        if json_body:
            require_json(request)
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return Depends(dependency)


def permission_of(dependant: Dependant) -> Permission | None:
    """The permission a route's dependency asks for (None: the route needs no token)."""
    for dependency in dependant.dependencies:
        permission: Permission | None = getattr(dependency.call, "permission", None)
        if permission is not None:
            return permission
    return None


Reads = authorize(Permission.READ)
Allocates = authorize(Permission.ALLOCATE)
AllocatesJson = authorize(Permission.ALLOCATE, json_body=True)
Administers = authorize(Permission.ADMINISTER)
AdministersJson = authorize(Permission.ADMINISTER, json_body=True)
