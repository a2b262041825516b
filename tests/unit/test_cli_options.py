"""The admin CLI's options, as a new user types them: no server is needed to see them parsed.

A command that parses its options goes on to call the server: at a closed port that is exit 3
(unreachable), while an option it refuses is exit 2 (usage).
"""

from pathlib import Path

import certifi
import pytest
from click.testing import Result
from typer.testing import CliRunner

from allocator.cli.main import app
from tests.e2e.server import free_port

CLOSED = f"http://127.0.0.1:{free_port()}"


CONNECTION_ENV = ("ALLOCATOR_URL", "ALLOCATOR_TOKEN", "ALLOCATOR_TOKEN_FILE", "ALLOCATOR_CA_FILE")


def run(*args: str, **env: str) -> Result:
    """Run the CLI in this process; the variables that options set are restored afterwards."""
    unset: dict[str, str | None] = dict.fromkeys(CONNECTION_ENV)
    return CliRunner().invoke(app, list(args), env={**unset, "COLUMNS": "200", **env})


@pytest.mark.parametrize("family", ["ipv4", "IPV6", "IPv4"])
def test_the_family_is_taken_in_any_case(family: str) -> None:
    listed = run("allocations", "list", "--family", family, "--server", CLOSED)
    assert listed.exit_code == 3, listed.output


@pytest.mark.parametrize("url", ["localhost:8080", "127.0.0.1:8080", "allocator.example"])
def test_a_server_without_a_scheme_is_a_usage_error_that_suggests_http(url: str) -> None:
    listed = run("ranges", "list", ALLOCATOR_URL=url)
    assert listed.exit_code == 2, listed.output
    assert f"did you mean http://{url}?" in listed.stderr
    given = run("ranges", "list", "--server", url)
    assert given.exit_code == 2 and f"http://{url}" in given.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--server", CLOSED, "ranges", "list"],
        ["ranges", "list", "--server", CLOSED],
        ["--token", "t", "ranges", "list", "--server", CLOSED],
        ["ranges", "list", "--token", "t", "--server", CLOSED],
        ["--server", CLOSED, "ip", "show", "10.96.0.1", "--token", "t"],
        ["allocations", "list", "--ca-file", certifi.where(), "--server", CLOSED],
    ],
)
def test_connection_options_go_before_or_after_the_command(args: list[str]) -> None:
    listed = run(*args)
    assert listed.exit_code == 3, listed.output
    assert f"cannot reach the allocator at {CLOSED}" in listed.stderr


def test_the_server_after_the_command_wins_over_the_one_before() -> None:
    other = f"http://127.0.0.1:{free_port()}"
    listed = run("--server", other, "ranges", "list", "--server", CLOSED)
    assert f"cannot reach the allocator at {CLOSED}" in listed.stderr


def test_a_ca_file_that_holds_no_certificate_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "ca.pem"
    empty.write_text("not a certificate\n")
    listed = run("ranges", "list", "--ca-file", str(empty), "--server", CLOSED)
    assert listed.exit_code == 2, listed.output
    assert "--ca-file" in listed.stderr and "Traceback" not in listed.output
