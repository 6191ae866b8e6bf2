"""Shared fixtures: one throwaway PostgreSQL for the session, a fresh database per test.

The server is started through the same embedded mechanism the daemon uses (or taken from
RADSCHED_TEST_DATABASE_URL, a DSN to a database whose user may CREATE DATABASE). Migrations are applied
once into a template database; each test gets a copy (CREATE DATABASE … TEMPLATE), which costs tens of
milliseconds and isolates tests completely.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from radsched.storage import embedded
from radsched.storage.db import Database
from radsched.storage.migrate import migrate

TEMPLATE = "radsched_test_template"

# Daemons started by tests (in-process or as child processes) put the admin console on a free port,
# not on the default 3011 that a developer's `make run` may hold.
os.environ.setdefault("RADSCHED_ADMIN_LISTEN", "127.0.0.1:0")


def private_tmp(prefix: str) -> Path:
    """A temp dir the embedded server (run as 'nobody' under root) can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    supplied = os.environ.get("RADSCHED_TEST_DATABASE_URL")
    if supplied:
        yield supplied
        return
    root = private_tmp("radsched-test-pg-")
    handle = asyncio.run(embedded.start(root / "pg"))
    try:
        yield handle.dsn("postgres")
    finally:
        asyncio.run(embedded.stop(handle))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_admin_dsn: str) -> str:
    async def build() -> None:
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
            await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(pg_admin_dsn, TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return TEMPLATE


@asynccontextmanager
async def _scratch_database(
    admin_dsn: str, prefix: str, template: str | None = None
) -> AsyncIterator[str]:
    """Create a database (optionally from a template), yield its DSN, drop it afterwards."""
    name = prefix + uuid.uuid4().hex[:16]
    clause = f' TEMPLATE "{template}"' if template else ""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    try:
        yield with_database(admin_dsn, name)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def database_url(pg_admin_dsn: str, pg_template: str) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database for this test only."""
    async with _scratch_database(pg_admin_dsn, "t_", pg_template) as dsn:
        yield dsn


@pytest.fixture
async def empty_database_url(pg_admin_dsn: str) -> AsyncIterator[str]:
    """DSN of a fresh database with no schema at all (for migration tests)."""
    async with _scratch_database(pg_admin_dsn, "e_") as dsn:
        yield dsn


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(database_url, registry=None, min_size=1, max_size=4)
    yield database
    await database.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = private_tmp("radsched-data-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
