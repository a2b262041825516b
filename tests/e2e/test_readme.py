"""The README, walked through as a new user walks through it: every ``console`` block's commands
run in order against a fresh ``allocator serve`` on a fresh data directory (the embedded
Postgres), each printing what the README shows.

JSON is compared member by member: the same members, the same values, except timestamps and the
addresses the server chose (an ``ip`` the command did not name), which are compared by type.
Text is compared line by line, timestamps aside; a line ``...`` stands for any lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.server import spawned
from tests.e2e.server import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
DATA_DIR_SHOWN = "~/.local/share/clusterip-allocator/postgres"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


@dataclass
class Step:
    command: str
    shown: list[str]


def steps(readme: str) -> list[Step]:
    """Return the commands of the README's ``console`` blocks, in order, with what each shows."""
    found: list[Step] = []
    for block in re.findall(r"^```console\n(.*?)^```", readme, re.M | re.S):
        lines = block.splitlines()
        while lines:
            line = lines.pop(0)
            assert line.startswith("$ "), f"a console block starts with a command: {line!r}"
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + " " + lines.pop(0).strip()
            shown = []
            while lines and not lines[0].startswith("$ "):
                shown.append(lines.pop(0))
            found.append(Step(command, shown))
    return found


def same(shown: Any, printed: Any, command: str, where: str = "") -> None:
    """Assert that ``printed`` (JSON) is what the README shows (see the module)."""
    assert type(printed) is type(shown), f"{where}: {printed!r} is not like {shown!r}"
    if isinstance(shown, dict):
        assert list(printed) == list(shown), f"{where}: members {list(printed)} != {list(shown)}"
        for key, value in shown.items():
            varies = key == "created_at" or (key == "ip" and value not in command)
            if not varies:
                same(value, printed[key], command, f"{where}.{key}")
    elif isinstance(shown, list):
        assert len(printed) == len(shown), f"{where}: {len(printed)} items, not {len(shown)}"
        for n, (one, other) in enumerate(zip(shown, printed, strict=True)):
            same(one, other, command, f"{where}[{n}]")
    else:
        assert printed == shown, f"{where}: {printed!r} != {shown!r}"


def as_json(lines: list[str]) -> list[Any] | None:
    """Return the JSON documents of ``lines`` (one, or one per line), or None if they are text."""
    text = "\n".join(lines)
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in lines]
    except ValueError:
        return None


def matches(shown: list[str], printed: list[str]) -> bool:
    """Return whether the lines printed are those shown (``...`` standing for any lines)."""
    if not shown:
        return not printed
    if shown[0] == "...":
        return any(matches(shown[1:], printed[n:]) for n in range(len(printed) + 1))
    return bool(printed) and shown[0] == printed[0] and matches(shown[1:], printed[1:])


def normalized(text: str) -> list[str]:
    return [TIMESTAMP.sub("<time>", line.rstrip()) for line in text.splitlines()]


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh ``allocator serve`` on a fresh embedded Postgres, as in the Quick start."""
    parent = Path(tempfile.mkdtemp(prefix="allocator-readme-"))
    parent.chmod(0o755)  # as root Postgres runs as another user, who must reach its data
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOCATOR_")}
    env |= {
        "ALLOCATOR_DATA_DIR": str(parent / "postgres"),
        "ALLOCATOR_URL": f"http://127.0.0.1:{port}",
    }
    bin_dir = str(Path(sys.executable).parent)  # where `allocator` is installed
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    command = [sys.executable, "-m", "allocator", "serve", "--port", str(port)]
    try:
        with spawned(command, port, **env):
            yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run(["rm", "-rf", str(parent)], check=False)


def test_every_console_block_prints_what_the_readme_shows(
    server: tuple[str, dict[str, str]],
) -> None:
    address, env = server
    walk = steps(README.read_text())
    assert any(step.command.startswith("curl") for step in walk)
    assert any(step.command.startswith("allocator") for step in walk)
    for step in walk:
        command = step.command.replace("localhost:8080", address)
        ran = subprocess.run(
            ["bash", "-c", command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        printed = ran.stdout.replace(env["ALLOCATOR_DATA_DIR"], DATA_DIR_SHOWN)
        refused = bool(step.shown) and step.shown[0].startswith("error:")
        assert (ran.returncode != 0) == refused, f"$ {step.command}\n{printed}"
        shown_json = as_json(step.shown) if step.shown else None
        if shown_json is not None:
            printed_json = as_json(printed.splitlines())
            assert printed_json is not None, f"$ {step.command}\nprinted no JSON:\n{printed}"
            same(shown_json, printed_json, step.command, step.command)
        else:
            assert matches(normalized("\n".join(step.shown)), normalized(printed)), (
                f"$ {step.command}\nthe README shows:\n"
                + "\n".join(step.shown)
                + f"\nit printed:\n{printed}"
            )
