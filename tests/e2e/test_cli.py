"""The admin CLI, run as ``allocator ...`` (Typer's runner invoking the real app) against a real
server process, and ``verify`` against the database."""

import asyncio
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml
from click.testing import Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from allocator.cli.main import app
from allocator.store.dsn import DatabaseUrl
from tests.database import fresh_database
from tests.e2e.server import free_port, running_server


def run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **env})


@pytest.fixture
def server(engine: AsyncEngine, database_url: str) -> Iterator[str]:
    with running_server(database_url) as url:
        yield url


def test_an_admin_session(server: str) -> None:
    def cli(*args: str) -> Result:
        return run(*args, "--server", server)

    created = cli("ranges", "create", "default-ipv4", "10.96.0.0/16")
    assert created.exit_code == 0, created.output
    assert "default-ipv4" in created.stdout and "65,534" in created.stdout
    assert cli("ranges", "create", "v6", "fd00:10:96::/64", "-o", "json").exit_code == 0

    dns = cli(
        "ip",
        "allocate",
        "--owner",
        "kube-system/kube-dns",
        "--ip",
        "10.96.0.10",
        "--metadata",
        '{"port": 53}',
        "-o",
        "json",
    )
    assert dns.exit_code == 0, dns.output
    allocation = json.loads(dns.stdout)
    assert (allocation["ip"], allocation["metadata"]) == ("10.96.0.10", {"port": 53})

    taken = cli("ip", "allocate", "--owner", "other", "--ip", "10.96.0.10")
    assert taken.exit_code == 1
    assert taken.stderr.strip() == (
        "error: 10.96.0.10 is already allocated to 'kube-system/kube-dns' "
        "(409 ip-already-allocated)"
    )
    assert "Traceback" not in taken.output

    web6 = yaml.safe_load(
        cli("ip", "allocate", "--owner", "web", "--family", "IPv6", "-o", "yaml").stdout
    )
    assert web6["range"] == "v6"

    shown = cli("ip", "show", "10.96.0.10")
    assert shown.exit_code == 0
    for expected in ("default-ipv4", "static", "allocated", "kube-system/kube-dns", '{"port":53}'):
        assert expected in shown.stdout
    free = yaml.safe_load(cli("ip", "show", "10.96.200.1", "-o", "yaml").stdout)
    assert free == {
        "ip": "10.96.200.1",
        "range": "default-ipv4",
        "band": "dynamic",
        "usable": True,
        "free": True,
        "allocation": None,
        "cooling": None,
    }
    network = json.loads(cli("ip", "show", "10.96.0.0", "-o", "json").stdout)
    assert (network["usable"], network["band"]) == (False, None)

    with httpx.Client(base_url=server) as api:
        for n in range(510):  # more than one page of 500
            assert api.post("/v1/allocations", json={"owner": f"bulk-{n}"}).status_code == 201
        listed_by_api = api.get("/v1/ranges").json()
        occupancy = api.get("/v1/ranges/default-ipv4/occupancy", params={"cells": 512}).json()

    listed = cli("ranges", "list", "-o", "json")
    assert json.loads(listed.stdout) == listed_by_api, "exactly the API objects"
    table = cli("ranges", "list").stdout
    assert "default-ipv4" in table and "511" in table and "0.78%" in table

    every = json.loads(cli("allocations", "list", "--range", "default-ipv4", "-o", "json").stdout)
    assert len(every["items"]) == 511, "paged through transparently"
    ips = [tuple(map(int, a["ip"].split("."))) for a in every["items"]]
    assert ips == sorted(ips)
    mine = json.loads(cli("allocations", "list", "--owner", "web", "-o", "json").stdout)
    assert [a["ip"] for a in mine["items"]] == [web6["ip"]]

    show = cli("ranges", "show", "default-ipv4")
    assert show.exit_code == 0
    assert "static" in show.stdout and "dynamic" in show.stdout and "occupancy" in show.stdout
    assert json.loads(cli("ranges", "show", "default-ipv4", "-o", "json").stdout) == occupancy
    lazy = cli("ranges", "show", "v6")
    assert "occupancy of the used part: 1 of" in lazy.stdout

    late = cli("ip", "release", "10.96.0.10", "--owner", "someone-else")
    assert (late.exit_code, "owner-mismatch" in late.stderr) == (1, True)
    assert cli("ip", "release", "10.96.0.10", "--owner", "kube-system/kube-dns").exit_code == 0
    assert json.loads(cli("ip", "show", "10.96.0.10", "-o", "json").stdout)["free"] is True

    not_empty = cli("ranges", "delete", "default-ipv4")
    assert (not_empty.exit_code, "range-not-empty" in not_empty.stderr) == (1, True)
    assert cli("ip", "release", web6["ip"]).exit_code == 0
    assert cli("ranges", "delete", "v6").exit_code == 0
    missing = cli("ranges", "show", "v6")
    assert (missing.exit_code, "range-not-found" in missing.stderr) == (1, True)


def test_usage_errors_exit_2() -> None:
    assert run("ip", "allocate").exit_code == 2, "--owner is required"
    assert run("ip", "allocate", "--owner", "a", "--metadata", "[1]").exit_code == 2
    assert run("ip", "allocate", "--owner", "a", "--metadata", "{").exit_code == 2
    assert run("ip", "show", "10.096.0.1").exit_code == 2
    assert run("ranges", "list", "-o", "xml").exit_code == 2
    assert run("allocations", "list", "--family", "IPv5").exit_code == 2


def test_an_unreachable_server_is_one_line() -> None:
    result = run("ranges", "list", "--server", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the allocator at http://")


async def test_verify_finds_then_repairs(engine: AsyncEngine, database_url: str) -> None:
    async def verify(*args: str) -> Result:
        return await asyncio.to_thread(run, "verify", *args, ALLOCATOR_DATABASE_URL=database_url)

    from allocator.service import ranges

    created = await ranges.create_range(engine, "small", "10.0.0.0/24")
    clean = await verify()
    assert clean.exit_code == 0 and "consistent" in clean.stdout
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE bitmap_block SET bits = set_bit(bits, 5, 1)"
                " WHERE range_id = :id AND band = 1"
            ),
            {"id": created.id},
        )
    found = await verify("-o", "json")
    assert found.exit_code == 1
    report = json.loads(found.stdout)
    assert report["counts"] == {
        "leak": 1,
        "missing-bit": 0,
        "cooling-missing-bit": 0,
        "count-drift": 2,
        "out-of-range": 0,
        "log-gap": 0,
    }
    table = await verify()
    assert table.exit_code == 1 and "--repair fixes what it can" in table.stdout
    repaired = await verify("--repair")
    assert repaired.exit_code == 0 and "every finding repaired" in repaired.stdout
    assert (await verify()).exit_code == 0


def test_open_watch_streams_are_counted(server: str) -> None:
    def watchers() -> str:
        text = httpx.get(f"{server}/metrics").text
        return next(line for line in text.splitlines() if line.startswith("allocator_watchers "))

    def eventually(expected: str) -> None:
        deadline = time.monotonic() + 10
        while watchers() != expected:
            assert time.monotonic() < deadline, f"never {expected}"
            time.sleep(0.05)

    assert watchers() == "allocator_watchers 0.0"
    with httpx.stream("GET", f"{server}/v1/watch", timeout=10) as stream:
        assert stream.status_code == 200
        eventually("allocator_watchers 1.0")
    eventually("allocator_watchers 0.0")


LONG_NAME = "a-range-whose-name-is-long-enough-to-overflow-any-table-cell"
OWNER = "kube-system/a-service-whose-name-a-person-copies-whole"


def test_tables_are_never_cut(server: str) -> None:
    """Names, CIDRs, addresses and counts come out whole however narrow the output: piped, the
    lines are as long as they need; in a narrow terminal the bars go and the rest wraps."""

    def cli(*args: str, **env: str) -> str:
        result = run(*args, "--server", server, **{"COLUMNS": "60", **env})
        assert result.exit_code == 0, result.output
        return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)

    cli("ranges", "create", "default-ipv4", "10.96.0.0/12")
    cli("ranges", "create", LONG_NAME, "fd00:10:96:1234::/64")
    cli("ip", "allocate", "--owner", OWNER, "--ip", "10.96.0.10")
    values = [LONG_NAME, "fd00:10:96:1234::/64", "default-ipv4", "10.96.0.0/12", "1,048,574"]
    piped = cli("ranges", "list")
    for value in values:
        assert value in piped, piped
    assert "…" not in piped
    listed = cli("allocations", "list")
    assert OWNER in listed and "10.96.0.10" in listed and "…" not in listed
    shown = cli("ranges", "show", "default-ipv4")
    assert "10.111.255.254" in shown and "1,048,318" in shown, shown
    assert OWNER in cli("ip", "show", "10.96.0.10")

    narrow = cli("ranges", "list", TTY_COMPATIBLE="1")
    assert "…" not in narrow and "·" not in narrow, "no value is cut; the bars went first"
    wide = cli("ranges", "list", TTY_COMPATIBLE="1", COLUMNS="200")
    assert "·" in wide, "a wide terminal has the bars"
    for value in values:
        assert value in wide


def test_verify_of_a_database_without_the_schema_is_one_line() -> None:
    with fresh_database() as url:
        verified = run("verify", ALLOCATOR_DATABASE_URL=url)
    assert verified.exit_code == 3, verified.output
    database = DatabaseUrl.parse(url)
    assert verified.stderr.strip().splitlines() == [
        f"error: no allocator schema in {database.where}: run `allocator db upgrade` first"
    ]


def test_dual_stack_and_cool_down_from_the_cli(server: str) -> None:
    def cli(*args: str) -> Result:
        return run(*args, "--server", server)

    assert (
        cli("ranges", "create", "v4", "10.96.0.0/24", "--release-cooldown-seconds", "600").exit_code
        == 0
    )
    assert cli("ranges", "create", "v6", "fd00:10:96::/120").exit_code == 0
    pair = cli(
        "ip", "allocate", "--owner", "web", "--family", "IPv4", "--family", "IPv6", "-o", "json"
    )
    assert pair.exit_code == 0, pair.output
    allocations = json.loads(pair.stdout)
    assert [a["family"] for a in allocations] == ["IPv4", "IPv6"]
    assert [a["revision"] for a in allocations] == [3, 4], "one transaction, request order"
    v4 = allocations[0]["ip"]
    assert cli("ip", "release", v4).exit_code == 0
    shown = cli("ip", "show", v4, "-o", "json")
    document = json.loads(shown.stdout)
    assert (document["free"], document["cooling"]["released_by"]) == (False, "web")
    table = cli("ip", "show", v4).stdout
    assert "cooling down until" in table and "web" in table
    listed = cli("ranges", "list").stdout
    assert "COOLING" in listed and "600s" in listed
    row = next(line for line in listed.splitlines() if line.startswith("v4"))
    assert row.split()[3:6] == ["254", "0", "1"], "size, allocated, cooling"
    assert "cooling 1" in cli("ranges", "show", "v4").stdout
    assert cli("ranges", "set", "v4", "--release-cooldown-seconds", "0").exit_code == 0
    assert "600s" not in cli("ranges", "list").stdout
    refused = cli(
        "ip", "allocate", "--owner", "db", "--family", "IPv4", "--family", "IPv6", "--range", "v4"
    )
    assert refused.exit_code == 2
