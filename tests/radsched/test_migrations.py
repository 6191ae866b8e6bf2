"""Migrations: ordered, recorded with checksums, safe under concurrency, refusing what is unsafe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from radsched.errors import StartupError
from radsched.storage.migrate import (
    Migration,
    current_version,
    load_migrations,
    migrate,
    migrations_dir,
)

EXPECTED_TABLES = {
    "patient_sms_consents",
    "sms_audit_log",
    "sms_conversations",
    "scheduling_config",
    "config_audit",
    "inbound_messages",
    "sms_outbox",
    "hl7_outbox",
    "schema_migrations",
}


async def test_applies_all_then_nothing(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        applied = await migrate(conn)
        assert applied == [m.version for m in load_migrations()]
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert tables >= EXPECTED_TABLES
        assert await migrate(conn) == []
        assert await current_version(conn) == max(applied)
    finally:
        await conn.close()


async def test_two_daemons_migrating_at_once_apply_each_once(empty_database_url: str) -> None:
    a = await asyncpg.connect(empty_database_url)
    b = await asyncpg.connect(empty_database_url)
    try:
        first, second = await asyncio.gather(migrate(a), migrate(b))
        assert sorted(first + second) == [m.version for m in load_migrations()]
        assert await a.fetchval("SELECT count(*) FROM schema_migrations") == len(load_migrations())
    finally:
        await a.close()
        await b.close()


async def test_refuses_edited_migration(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        edited = [Migration(m.version, m.name, m.sql + "\n-- edited") for m in load_migrations()]
        with pytest.raises(StartupError, match="was edited after it was applied"):
            await migrate(conn, edited)
    finally:
        await conn.close()


async def test_refuses_database_newer_than_code(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        known = load_migrations()
        await migrate(conn)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'future', 'x')",
            known[-1].version + 1,
        )
        with pytest.raises(StartupError, match="newer than this radsched knows"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_failed_migration_leaves_nothing_half_applied(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        broken = [*load_migrations()]
        latest = broken[-1].version
        broken.append(Migration(latest + 1, "broken", "CREATE TABLE ok_t(x int); SELEC 1;"))
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await migrate(conn, broken)
        assert await conn.fetchval("SELECT to_regclass('ok_t')") is None
        assert await current_version(conn) == latest
    finally:
        await conn.close()


def test_migration_files_are_numbered_and_found() -> None:
    directory = migrations_dir()
    assert isinstance(directory, Path)
    assert next(m.version for m in load_migrations(directory)) == 1
