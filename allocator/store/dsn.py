"""The database URL as asyncpg takes it: libpq's single- and multi-host forms, checked at start.

    postgresql://user:password@db1:5432,db2:5432/allocator?target_session_attrs=read-write
    postgresql://user@/allocator?host=db1,db2&port=5432,5433      (or host=db1&host=db2)
    postgresql://postgres@/postgres?host=/run/postgresql          (a Unix socket directory)

SQLAlchemy's URL parser reads none of the multi-host forms, so every connection of the service
(the engine's pool, the listener, migrations, verify, the benchmarks) is opened by a ``Connector``
and asyncpg, which follows libpq, tries the hosts in turn. The service writes, so with several
hosts it needs the primary: ``target_session_attrs`` defaults to ``read-write`` and may not ask
for a standby.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from allocator.settings import Settings

APPLICATION_NAME = "clusterip-allocator"

WRITABLE = ("read-write", "primary", "any")
"""The target_session_attrs that lead to a server that accepts writes (``any``: the first one
that answers, for a single host or hosts that all reach the primary)."""
READ_ONLY = ("standby", "prefer-standby", "read-only")


class InvalidDatabaseUrl(ValueError):
    """ALLOCATOR_DATABASE_URL cannot be used; the message says why, in one line."""


class NoPrimary(ConnectionError):
    """Every host answered and none accepts writes: a failover is under way (retry later)."""


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A checked database URL: ``dsn`` is what asyncpg reads user, password, database and the
    other parameters from; the hosts, their ports and ``target_session_attrs`` are passed apart,
    since asyncpg keeps only the last of repeated ``host`` parameters."""

    dsn: str
    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    target_session_attrs: str | None

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        """Return the checked form of ``url``; raises InvalidDatabaseUrl saying what is wrong."""
        try:
            parts = urllib.parse.urlsplit(url)
            query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        except ValueError as exc:
            raise InvalidDatabaseUrl(f"not a URL: {exc}") from None
        if parts.scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise InvalidDatabaseUrl(
                f"must be a postgresql:// URL, not {parts.scheme or 'one without a scheme'}"
            )
        userinfo, _, hostspec = parts.netloc.rpartition("@")
        hosts, ports = _hosts_of(hostspec)
        query_hosts = [h for key, value in query if key == "host" for h in value.split(",")]
        query_ports = [p for key, value in query if key == "port" for p in value.split(",")]
        if query_hosts:  # as libpq: the query's hosts take the place of the URL's
            hosts, ports = [urllib.parse.unquote(h) for h in query_hosts], [None] * len(query_hosts)
        if query_ports:
            if len(query_ports) not in (1, len(hosts)):
                raise InvalidDatabaseUrl(
                    f"{len(query_ports)} ports for {len(hosts)} hosts: give one port, or one per host"
                )
            given: list[int | None] = [_port(p) for p in query_ports]
            ports = given * (len(hosts) if len(given) == 1 else 1)
        attrs = dict(query).get("target_session_attrs")
        if attrs is not None and attrs not in WRITABLE:
            reason = "the service writes, so it needs a primary" if attrs in READ_ONLY else ""
            raise InvalidDatabaseUrl(
                f"target_session_attrs={attrs} cannot be used"
                f"{': ' + reason if reason else ''} (use read-write)"
            )
        if attrs is None and len(hosts) > 1:
            attrs = "read-write"
        rest = [(k, v) for k, v in query if k not in ("host", "port", "target_session_attrs")]
        dsn = _url(f"{userinfo}@" if userinfo else "", parts.path, rest)
        return cls(dsn, tuple(hosts), tuple(p or 5432 for p in ports), attrs)

    @property
    def address(self) -> str:
        """The hosts as people write them (for messages): ``db1:5432,db2:5432``."""
        if not self.hosts:
            return "the default host"
        return ",".join(
            h if h.startswith("/") else f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
            for h, p in zip(self.hosts, self.ports, strict=True)
        )

    @property
    def where(self) -> str:
        """The database and its hosts as people name them (for messages): ``database allocator
        on db1:5432``."""
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.dsn).path.lstrip("/"))
        return f"database {name or '(the default)'} on {self.address}"

    def with_database(self, name: str) -> DatabaseUrl:
        """Return this URL naming database ``name`` instead (a fresh database on one server)."""
        parts = urllib.parse.urlsplit(self.dsn)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        dsn = _url(parts.netloc, "/" + urllib.parse.quote(name, safe=""), query)
        return replace(self, dsn=dsn)

    def libpq(self) -> str:
        """Return the URL as libpq writes it: the hosts in the URL (``h1:p1,h2:p2``), or in
        ``host=`` and ``port=`` lists when one is a Unix socket directory (for pgbench, psql and
        anything else that reads a URL itself)."""
        parts = urllib.parse.urlsplit(self.dsn)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        netloc = parts.netloc
        if any(h.startswith("/") for h in self.hosts):
            query.append(("host", ",".join(self.hosts)))
            query.append(("port", ",".join(str(p) for p in self.ports)))
        elif self.hosts:
            netloc += ",".join(urllib.parse.quote(a, safe="[]:") for a in self.address.split(","))
        if self.target_session_attrs:
            query.append(("target_session_attrs", self.target_session_attrs))
        return _url(netloc, parts.path, query)

    def connect_args(self) -> dict[str, Any]:
        """The arguments of ``asyncpg.connect`` beside the dsn: hosts, ports, session attrs."""
        args: dict[str, Any] = {}
        if self.hosts:
            args["host"], args["port"] = list(self.hosts), list(self.ports)
        if self.target_session_attrs:
            args["target_session_attrs"] = self.target_session_attrs
        return args


def _url(netloc: str, path: str, query: list[tuple[str, str]]) -> str:
    """Return ``postgresql://netloc/path?query`` (urlunsplit drops the ``//`` of an empty
    netloc, which libpq needs)."""
    encoded = urllib.parse.urlencode(query, safe=",/:")
    return f"postgresql://{netloc}{path}{'?' + encoded if encoded else ''}"


def _hosts_of(hostspec: str) -> tuple[list[str], list[int | None]]:
    """Split libpq's ``h1:p1,[v6]:p2,h3`` into hosts and ports (None where none was given)."""
    hosts: list[str] = []
    ports: list[int | None] = []
    if not hostspec:
        return hosts, ports
    for spec in hostspec.split(","):
        if spec.startswith("["):
            host, _, rest = spec[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else rest
            if rest and not rest.startswith(":"):
                raise InvalidDatabaseUrl(f"host {spec!r} is not [address]:port")
        else:
            host, _, port = spec.partition(":")
        if not host:
            raise InvalidDatabaseUrl(f"an empty host in {hostspec!r}")
        hosts.append(urllib.parse.unquote(host))
        ports.append(_port(port) if port else None)
    return hosts, ports


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidDatabaseUrl(f"port {text!r} is not a port number")
    return int(text)


@dataclass(frozen=True, slots=True)
class Connector:
    """Opens connections to the primary of ``url`` with the service's timeouts and settings.

    Call it with no arguments (SQLAlchemy's ``async_creator``), or hand it to
    ``asyncpg.create_pool(connect=...)``, which adds its connection and record classes.
    """

    url: DatabaseUrl
    options: dict[str, Any] = field(default_factory=dict)

    async def __call__(self, **extra: Any) -> asyncpg.Connection:
        """Return a new connection; raises NoPrimary (an OSError) when every host is a standby,
        OSError when none answers, and asyncpg's errors for what the server refuses."""
        try:
            return await asyncpg.connect(
                self.url.dsn, **self.url.connect_args(), **{**self.options, **extra}
            )
        except asyncpg.TargetServerAttributeNotMatched:
            raise NoPrimary(
                f"no host of {self.url.address} accepts writes now"
                f" (target_session_attrs={self.url.target_session_attrs})"
            ) from None


def connector(url: str, settings: Settings, application_name: str = APPLICATION_NAME) -> Connector:
    """Return the connector of ``url`` whose connections carry the service's timeouts.

    Raises InvalidDatabaseUrl.
    """
    statement_timeout = settings.statement_timeout_ms
    return Connector(
        DatabaseUrl.parse(url),
        {
            "timeout": settings.connect_timeout,
            # The server's statement_timeout ends a statement first; this ends a dead connection.
            "command_timeout": statement_timeout / 1000 + 5 if statement_timeout else None,
            "server_settings": {
                "timezone": "UTC",
                "statement_timeout": str(statement_timeout),
                "lock_timeout": str(settings.lock_timeout_ms),
                "application_name": application_name,
            },
        },
    )
