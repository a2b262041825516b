"""Applying and checking the Alembic migrations in ``migrations/``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def newest_revision() -> str | None:
    """Return the revision id of the newest migration."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """Return the migration revision the database is at (None before the first).

    Read from Alembic's version table itself: a MigrationContext would log two lines at each
    readiness probe.
    """
    if connection.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar() is None:
        return None
    revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if revision is None else str(revision)


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every pending migration; concurrent callers are serialized by an advisory lock."""

    def run(connection: Connection) -> None:
        # Two replicas starting at once must not both create the schema.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7245110)")
        command.upgrade(alembic_config(connection), "head")

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def is_current(engine: AsyncEngine) -> bool:
    """Return whether the database schema is at the newest migration."""
    async with engine.connect() as connection:
        revision = await connection.run_sync(current_revision)
    return revision == newest_revision()


def statements(script: str) -> list[str]:
    """Return the statements of a SQL script, split at semicolons outside quotes, dollar-quoted
    bodies and comments (a prepared statement takes one at a time)."""
    found, start, i, quote = [], 0, 0, ""
    while i < len(script):
        if quote:
            if script.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
        elif script.startswith("--", i):
            i = script.find("\n", i) % (len(script) + 1)
        elif script[i] in "'\"":
            quote = script[i]
        elif script.startswith("$$", i):
            quote, i = "$$", i + 1
        elif script[i] == ";":
            found.append(script[start : i + 1].strip())
            start = i + 1
        i += 1
    return [s for s in found if s.strip(";")] + ([rest] if (rest := script[start:].strip()) else [])


def execute_script(connection: Connection, path: Path) -> None:
    """Run the SQL file ``path`` statement by statement, at the driver level: its colons and
    percent signs are not bind parameters."""
    for statement in statements(path.read_text()):
        connection.exec_driver_sql(statement)


def function_definition(path: Path, name: str) -> str:
    """Return the ``CREATE [OR REPLACE] FUNCTION name(...) ... $$;`` statement of the SQL file
    ``path``, as ``CREATE OR REPLACE``: a downgrade puts back an earlier migration's function."""
    source = path.read_text()
    start = source.index(f" FUNCTION {name}(")
    start = source.rindex("CREATE", 0, start)
    body = source.index("$$", source.index("$$", start) + 2)
    statement = source[start : source.index(";", body) + 1]
    return "CREATE OR REPLACE FUNCTION" + statement.split("FUNCTION", 1)[1]
