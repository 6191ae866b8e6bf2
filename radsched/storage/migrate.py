"""Forward-only schema migrations from ``sql/NNNN_name.sql``.

Each file runs in its own transaction; the whole run holds a PostgreSQL advisory lock so two daemons
starting at once apply each migration exactly once. Applied versions are recorded with a SHA-256 of
the file. The daemon refuses to start when the database is newer than the code (a rollback of the
binary must not write into a schema it does not understand) or when an applied file was edited.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from radsched.errors import StartupError

log = logging.getLogger("radsched.storage.migrate")

# Arbitrary but fixed: "radsched" in ASCII, truncated to a signed 64-bit key.
MIGRATION_LOCK_KEY = 0x7261647363686564 & 0x7FFFFFFFFFFFFFFF
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    """``radsched/_sql`` inside an installed wheel; the repository's ``sql/`` in a source checkout."""
    packaged = resources.files("radsched").joinpath("_sql")
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / "sql"
    if source.is_dir():
        return source
    raise StartupError("migrations not found: neither radsched/_sql nor ./sql exists")


def load_migrations(directory: Path | None = None) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted((directory or migrations_dir()).glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise StartupError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or (versions and versions[0] < 1):
        raise StartupError(f"migration numbers must be unique and start at 1, found {versions}")
    return found


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending migrations; return the versions applied now (empty when up to date)."""
    todo = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {
            r["version"]: (r["name"], r["checksum"])
            for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        known = {m.version: m for m in todo}
        newer = sorted(v for v in applied if v not in known)
        if newer:
            raise StartupError(
                f"database schema is at version {max(applied)}, newer than this radsched knows "
                f"({max(known, default=0)}); upgrade radsched or point it at another database"
            )
        for version, (name, checksum) in sorted(applied.items()):
            if known[version].checksum != checksum:
                raise StartupError(
                    f"migration {version:04d}_{name}.sql was edited after it was applied; "
                    "migrations are forward-only: restore the file and add a new one"
                )
        done: list[int] = []
        for migration in todo:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info(
                "applied migration",
                extra={"version": migration.version, "migration": migration.name},
            )
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
