"""docker-compose.yml: the services the README promises, wired as it says, and valid for
Compose itself when a Compose is installed."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_the_demo_runs_postgres_migrations_the_api_and_the_agent() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "api", "agent"}
    assert services["migrate"]["command"] == ["allocator", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    api = services["api"]
    assert api["command"][:2] == ["allocator", "serve"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["environment"]["ALLOCATOR_DATABASE_URL"].startswith("postgresql://")
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    agent = services["agent"]
    assert agent["command"][:2] == ["allocator", "agent"]
    assert (agent["network_mode"], agent["cap_add"]) == ("host", ["NET_ADMIN"])
    for name in ("migrate", "api", "agent"):
        assert services[name]["build"] == "."


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def test_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither docker compose nor docker-compose is installed")
    checked = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
