"""A client generated from the server's OpenAPI schema, as a user in any language would make one:
the README's session through it type-checks strictly and runs against a real server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.server import running_server

SESSION = Path(__file__).with_name("generated_session.py")
CONFIG = {"package_name_override": "generated_client", "post_hooks": []}
# The generated package strictly; the session also with no Any on the way: every value it reads
# has the type the schema declares.
MYPY = """
[mypy]
strict = True

[mypy-session]
disallow_any_expr = True
disallow_any_explicit = True
"""


@pytest.fixture
def server(engine: AsyncEngine, database_url: str) -> Iterator[str]:
    with running_server(database_url) as url:
        yield url


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_the_readme_session_through_a_generated_client(server: str, tmp_path: Path) -> None:
    (tmp_path / "openapi.json").write_text(httpx.get(f"{server}/openapi.json").text)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "mypy.ini").write_text(MYPY)
    shutil.copy(SESSION, tmp_path / "session.py")

    generated = run(
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path=openapi.json",
        "--config=config.json",
        "--meta=none",
        "--output-path=generated_client",
        cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout

    checked = run(
        sys.executable, "-m", "mypy", "--config-file=mypy.ini", "session.py", cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    ran = run(sys.executable, "session.py", server, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["range"] == ["default-ipv4", "IPv4", 1048574, 256]
    assert seen["dynamic"] == [201, 200, True]
    assert seen["static"] == ["10.96.0.10", "default-ipv4", True]
    assert seen["conflict"] == [409, "ip-already-allocated", "kube-system/kube-dns"]
    assert len(seen["pages"]) == 2
    assert "10.96.0.10" in seen["pages"]
    assert seen["release"] == [409, "kube-system/kube-dns", 204]
    assert seen["released"] == ["default/web"]
    dynamic_ip = next(ip for ip in seen["pages"] if ip != "10.96.0.10")
    assert seen["events"] == [
        ["RANGE_ADDED", 1, "default-ipv4"],
        ["ALLOCATED", 2, dynamic_ip],
        ["ALLOCATED", 3, "10.96.0.10"],
        ["RELEASED", 4, "10.96.0.10"],
        ["RELEASED", 5, dynamic_ip],
    ]
    assert seen["head"] == 5
