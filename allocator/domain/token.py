"""Bearer tokens, their roles, and the one line each is stored as.

A token is a high-entropy random string (``secrets.token_urlsafe(32)``: 256 bits), shown once when
it is created and never stored: the tokens file keeps only its SHA-256. A slow password hash would
add nothing here, because a 256-bit random token cannot be guessed from its digest; a fast one keeps
the check cheap on every request.

Tokens file format, one token per line, fields separated by white space::

    # name        role       hash
    mini-apiserver allocator sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

Blank lines and lines starting with ``#`` are ignored. Names are 1-63 characters of
``[A-Za-z0-9._@-]``; the role is ``admin``, ``allocator`` or ``reader``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

HASH_PREFIX = "sha256:"
NAME = re.compile(r"[A-Za-z0-9._@-]{1,63}")


class Role(enum.StrEnum):
    """What a token may do; each role may do everything the ones below it may."""

    ADMIN = "admin"  # ranges, repair, everything
    ALLOCATOR = "allocator"  # allocate, release, read
    READER = "reader"  # read and watch


class Permission(enum.StrEnum):
    READ = "read"  # ranges, allocations, events, watch
    ALLOCATE = "allocate"  # allocate and release addresses
    ADMINISTER = "administer"  # create and delete ranges, repair


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.ALLOCATOR: frozenset({Permission.READ, Permission.ALLOCATE}),
    Role.READER: frozenset({Permission.READ}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the token's name and role (``anonymous`` when no tokens are set)."""

    name: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


ANONYMOUS = Principal("anonymous", Role.ADMIN)
"""The principal of every request to a server without tokens (it serves loopback only)."""


class TokenFileError(ValueError):
    """A line of the tokens file cannot be read; the message names the line."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One line of the tokens file."""

    name: str
    role: Role
    digest: str  # hex SHA-256 of the token

    def line(self) -> str:
        return f"{self.name} {self.role} {HASH_PREFIX}{self.digest}\n"


def new_token() -> str:
    """Return a fresh random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def digest_of(token: str) -> str:
    """Return the hex SHA-256 of ``token``, the form in which it is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def record_for(token: str, name: str, role: Role) -> TokenRecord:
    """Return the line to store for ``token``; raise TokenFileError for a bad name."""
    if not NAME.fullmatch(name):
        raise TokenFileError(f"token name {name!r} must be 1-63 characters of [A-Za-z0-9._@-]")
    return TokenRecord(name, role, digest_of(token))


def parse_records(text: str, source: str = "tokens file") -> list[TokenRecord]:
    """Return the records of a tokens file; raise TokenFileError naming the first bad line."""
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{source} line {number}"
        if len(fields) != 3:
            raise TokenFileError(
                f"{where}: expected 'name role sha256:HEX', got {len(fields)} fields"
            )
        name, role, hashed = fields
        if not NAME.fullmatch(name):
            raise TokenFileError(f"{where}: bad token name {name!r}")
        if role not in {r.value for r in Role}:
            raise TokenFileError(f"{where}: unknown role {role!r} (admin, allocator, reader)")
        digest = hashed.removeprefix(HASH_PREFIX)
        if not hashed.startswith(HASH_PREFIX) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise TokenFileError(f"{where}: the hash must be sha256: and 64 lowercase hex digits")
        records.append(TokenRecord(name, Role(role), digest))
    return records


def identify(token: str, records: Iterable[TokenRecord]) -> Principal | None:
    """Return the principal whose stored digest matches ``token``, or None.

    Every record is compared, in constant time each, so the time taken says nothing about which
    digest came close.
    """
    presented = digest_of(token)
    found = None
    for record in records:
        if hmac.compare_digest(presented, record.digest) and found is None:
            found = Principal(record.name, record.role)
    return found
