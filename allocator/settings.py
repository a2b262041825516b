"""Configuration, from ``ALLOCATOR_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    group_commit_max: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="concurrent dynamic allocations a process commits in one transaction at most;"
        " 1 turns group commit off",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="server log lines: text for people, json for log collectors"
    )

    # Security and limits (see allocator.api.auth and allocator.api.limits).
    tokens_file: Path | None = Field(
        default=None,
        description="bearer tokens (name role sha256:HEX per line); unset, the API is open "
        "and serves loopback only",
    )
    max_body_bytes: int = Field(default=65_536, ge=1024, description="larger bodies get 413")
    max_batch_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="the same for POST /v1/allocations:batch (1000 requests with a few hundred "
        "bytes of metadata each fit)",
    )
    max_watchers_per_token: int = Field(default=256, ge=1, description="more get 429")

    # The event feed (see allocator.service.feed.tailer and allocator.service.feed.watch).
    feed_poll_interval: float = Field(
        default=0.2, gt=0, le=10, description="seconds between log reads when no notification came"
    )
    feed_window: int = Field(default=10_000, ge=1, description="recent events kept in memory")
    watch_queue: int = Field(
        default=5_000, ge=1, description="events a watcher may lag behind before it is cut off"
    )
    watch_bookmark_seconds: float = Field(default=5.0, gt=0, le=10)
    watch_timeout_seconds: float = Field(
        default=300.0, gt=0, description="a watch stream ends after this long; clients resume"
    )
    watch_send_timeout_seconds: float = Field(
        default=30.0, gt=0, description="a watcher that reads nothing for this long is dropped"
    )
    event_retention_seconds: float = Field(default=86_400.0, gt=0)
    event_retention_count: int = Field(default=1_000_000, ge=1)
    compaction_interval_seconds: float = Field(default=60.0, gt=0)
    compaction_batch: int = Field(default=5_000, ge=1)

    # Release cool-down (see allocator.service.cooldown).
    cooldown_sweep_seconds: float = Field(
        default=1.0, gt=0, le=60, description="seconds between two rounds that end cool-downs"
    )
