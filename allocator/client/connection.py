"""How a client reaches the server: its bearer token and the CA it trusts.

Given explicitly, they are used as given; left out, they come from the environment, so every
program built on the client (the CLI, the agent, scripts) is configured the same way:

- ``ALLOCATOR_TOKEN``: the bearer token (``allocator token create`` prints one);
- ``ALLOCATOR_CA_FILE``: a PEM file of the CA that signed the server's certificate, for a server
  whose certificate the system's trust store does not know (a private CA, a self-signed one).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

TOKEN_ENV = "ALLOCATOR_TOKEN"
CA_FILE_ENV = "ALLOCATOR_CA_FILE"

Verify = ssl.SSLContext | str | bool | None
"""A CA file path, an SSL context, False (no verification: tests only), True (the system's
trust store) or None (``ALLOCATOR_CA_FILE`` when set, else the system's trust store)."""


def resolve_token(token: str | None) -> str | None:
    """Return ``token``, or ``ALLOCATOR_TOKEN`` when it is None (None when that is unset too)."""
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    return token


def resolve_verify(verify: Verify) -> ssl.SSLContext | bool:
    """Return what httpx should verify the server with (see ``Verify``)."""
    if verify is None:
        verify = os.environ.get(CA_FILE_ENV) or True
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def read_token_file(path: str | Path) -> str:
    """Return the token stored in ``path`` (surrounding white space removed).

    Raises OSError when the file cannot be read and ValueError when it holds no token.
    """
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"{path} must hold exactly one token")
    return token


def http_options(token: str | None = None, verify: Verify = None) -> dict[str, Any]:
    """Return the httpx client arguments (``headers``, ``verify``) for ``token`` and ``verify``."""
    resolved = resolve_token(token)
    headers = {"Authorization": f"Bearer {resolved}"} if resolved else {}
    return {"headers": headers, "verify": resolve_verify(verify)}
