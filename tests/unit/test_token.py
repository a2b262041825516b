"""Tokens, their file and the ``allocator token`` command."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator.cli.main import app
from allocator.domain.token import (
    Permission,
    Principal,
    Role,
    TokenFileError,
    digest_of,
    identify,
    new_token,
    parse_records,
    record_for,
)
from allocator.store.token_file import read_records


def test_roles_grant_nested_permissions() -> None:
    assert Principal("a", Role.ADMIN).may(Permission.ADMINISTER)
    allocator = Principal("b", Role.ALLOCATOR)
    assert allocator.may(Permission.ALLOCATE) and allocator.may(Permission.READ)
    assert not allocator.may(Permission.ADMINISTER)
    reader = Principal("c", Role.READER)
    assert reader.may(Permission.READ) and not reader.may(Permission.ALLOCATE)


def test_tokens_are_random_and_stored_as_sha256_only() -> None:
    first, second = new_token(), new_token()
    assert first != second and len(first) >= 43
    record = record_for(first, "svc", Role.ALLOCATOR)
    assert first not in record.line()
    assert record.line() == f"svc allocator sha256:{digest_of(first)}\n"
    assert parse_records(record.line()) == [record]


def test_identify_finds_the_matching_record_only() -> None:
    tokens = [new_token() for _ in range(3)]
    records = [record_for(t, f"n{i}", Role.READER) for i, t in enumerate(tokens)]
    assert identify(tokens[1], records) == Principal("n1", Role.READER)
    assert identify("guess", records) is None
    assert identify(tokens[1][:-1], records) is None


@pytest.mark.parametrize(
    "line",
    [
        "name admin",
        "name admin sha256:abc",
        "name root sha256:" + "0" * 64,
        "bad/name reader sha256:" + "0" * 64,
        "name reader md5:" + "0" * 32,
        "name reader sha256:" + "A" * 64,
    ],
)
def test_malformed_lines_are_refused_with_their_number(line: str) -> None:
    with pytest.raises(TokenFileError, match="line 2"):
        parse_records("# comment\n" + line + "\n")


def test_comments_and_blank_lines_are_ignored() -> None:
    text = "\n# name role hash\n  \nx reader sha256:" + "1" * 64 + "\n"
    assert [r.name for r in parse_records(text)] == ["x"]


def test_token_create_prints_the_token_once_and_appends_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    runner = CliRunner()
    result = runner.invoke(
        app, ["token", "create", "--role", "allocator", "--name", "apiserver", "--file", str(path)]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in path.read_text()
    assert identify(token, read_records(path)) == Principal("apiserver", Role.ALLOCATOR)

    again = runner.invoke(
        app, ["token", "create", "--role", "reader", "--name", "apiserver", "--file", str(path)]
    )
    assert again.exit_code == 1 and "exists already" in again.output
    second = runner.invoke(
        app, ["token", "create", "--role", "reader"], env={"ALLOCATOR_TOKENS_FILE": str(path)}
    )
    assert second.exit_code == 0, second.output
    listed = runner.invoke(app, ["token", "list", "--file", str(path)])
    assert listed.stdout.splitlines() == ["apiserver\tallocator", "reader-2\treader"]
