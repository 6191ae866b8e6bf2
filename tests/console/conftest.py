from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from radsched.settings import Settings
from radsched.storage.db import Database
from tests.console.helpers import Clock, console_settings, deps_for, start_client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(data_dir: Path, database_url: str) -> Settings:
    return console_settings(data_dir, database_url)


@pytest.fixture
async def client(
    db: Database, settings: Settings, clock: Clock
) -> AsyncIterator[TestClient[object, object]]:
    c = await start_client(deps_for(db, settings, clock))
    yield c
    await c.close()
