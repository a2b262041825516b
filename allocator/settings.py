"""Configuration, from ``ALLOCATOR_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Return the per-user directory of the embedded Postgres (XDG data home)."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "clusterip-allocator" / "postgres"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALLOCATOR_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="libpq-style URL (postgresql://user:password@host:5432/db); "
        "unset, an embedded Postgres is started in data_dir.",
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    default_ranges: str = Field(
        default="",
        description="Ranges created at start when absent: name=cidr,name=cidr",
    )
    pool_size: int = Field(default=20, ge=1, le=500)
    pool_timeout: float = Field(default=5.0, gt=0, description="seconds to wait for a connection")
    connect_timeout: float = Field(default=5.0, gt=0)
    statement_timeout_ms: int = Field(default=10_000, ge=0)
    lock_timeout_ms: int = Field(default=5_000, ge=0)
    retry_after_seconds: int = Field(default=2, ge=1)
