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
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


def authorize(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """Return the dependency that admits principals holding ``permission``."""

    # async although it awaits nothing: FastAPI runs a sync dependency in a worker thread, a hop
    # that costs more than the check itself on every request.
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        principal = authenticator.principal(credentials)
        request.state.principal = principal
        current_principal.set(principal)  # the route runs in this task: its logs see it
        if not principal.may(permission):
            raise Forbidden(
                f"token {principal.name!r} (role {principal.role}) may not {permission}",
                role=str(principal.role),
                permission=str(permission),
            )
        return principal

    return dependency


Reads = Depends(authorize(Permission.READ))
Allocates = Depends(authorize(Permission.ALLOCATE))
Administers = Depends(authorize(Permission.ADMINISTER))

ReaderDep = Annotated[Principal, Reads]
AllocatorDep = Annotated[Principal, Allocates]
AdminDep = Annotated[Principal, Administers]
