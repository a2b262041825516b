"""The database URL: libpq's single- and multi-host forms, and the refusals of what cannot work."""

from __future__ import annotations

import pytest

from allocator.store.dsn import DatabaseUrl, InvalidDatabaseUrl


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5511,127.0.0.1:5512/allocator",
        "postgresql://postgres@/allocator?host=127.0.0.1&host=127.0.0.1&port=5511&port=5512",
        "postgresql://postgres@/allocator?host=127.0.0.1,127.0.0.1&port=5511,5512",
        "postgresql://postgres@ignored:1/allocator?host=127.0.0.1,127.0.0.1&port=5511,5512",
    ],
)
def test_every_multi_host_form_names_the_same_hosts_and_wants_the_primary(url: str) -> None:
    parsed = DatabaseUrl.parse(url)
    assert parsed.connect_args() == {
        "host": ["127.0.0.1", "127.0.0.1"],
        "port": [5511, 5512],
        "target_session_attrs": "read-write",
    }
    assert parsed.dsn == "postgresql://postgres@/allocator", "asyncpg reads the rest from it"
    assert parsed.address == "127.0.0.1:5511,127.0.0.1:5512"


def test_one_host_keeps_the_server_default_session_attrs_and_the_other_parameters() -> None:
    parsed = DatabaseUrl.parse("postgresql+asyncpg://u:p%40ss@db/a?sslmode=require")
    assert parsed.connect_args() == {"host": ["db"], "port": [5432]}
    assert parsed.dsn == "postgresql://u:p%40ss@/a?sslmode=require"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5511,[::1]:5512/allocator?target_session_attrs=primary",
        "postgresql://postgres:@/postgres?host=/tmp/pg&port=5433",
        "postgresql:///allocator",
    ],
)
def test_the_libpq_form_reads_back_the_same(url: str) -> None:
    parsed = DatabaseUrl.parse(url)
    assert DatabaseUrl.parse(parsed.libpq()) == parsed
    assert DatabaseUrl.parse(parsed.with_database("other").libpq()).dsn.endswith("/other")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://db/a", "must be a postgresql:// URL, not mysql"),
        ("postgresql://db:54x2/a", "port '54x2' is not a port number"),
        ("postgresql://a,,b/db", "an empty host"),
        ("postgresql:///db?host=a,b,c&port=1,2", "2 ports for 3 hosts"),
        ("postgresql://a,b/db?target_session_attrs=standby", "the service writes"),
        ("postgresql://a/db?target_session_attrs=sometimes", "target_session_attrs=sometimes"),
    ],
)
def test_a_url_that_cannot_work_is_refused_saying_why(url: str, reason: str) -> None:
    with pytest.raises(InvalidDatabaseUrl, match=reason) as refused:
        DatabaseUrl.parse(url)
    assert "\n" not in str(refused.value)
