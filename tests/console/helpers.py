"""Console test helpers: a clock the test moves, a console on a real loopback socket, logins."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from radsched.console import ConsoleDeps, build_console_app
from radsched.console.component import CommandOutbox, settings_rows
from radsched.console.session import derive_cookie_key
from radsched.console.users import add_user
from radsched.privacy import PhiBox
from radsched.rest.health import Readiness
from radsched.settings import Settings
from radsched.storage.db import Database

PHONE_KEY = "a" * 64
PHI_KEY = "b" * 64
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 12, 3, 15, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def console_settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=SecretStr(database_url),
        phone_hash_key=SecretStr(PHONE_KEY),
        phi_key=SecretStr(PHI_KEY),
        emr_routes="HOSP=127.0.0.1:9",
    )


def deps_for(db: Database, settings: Settings, clock: Clock) -> ConsoleDeps:
    readiness = Readiness()

    async def database() -> str | None:
        await db.ping()
        return None

    readiness.add("database", database)
    return ConsoleDeps(
        db=db,
        cookie_key=derive_cookie_key(PHI_KEY),
        readiness=readiness.run,
        outbox=CommandOutbox(settings),
        settings_rows=settings_rows(settings),
        modality_defaults=settings.modality_defaults,
        phi=PhiBox.from_secret(PHI_KEY),
        destinations=["127.0.0.1:9"],
        clock=clock,
    )


async def start_client(deps: ConsoleDeps) -> TestClient[object, object]:
    client: TestClient[object, object] = TestClient(TestServer(build_console_app(deps)))
    await client.start_server()
    return client


async def make_user(
    db: Database, name: str, role: str, *, password: str | None = PASSWORD, clock: Clock
) -> str | None:
    async with db.transaction("test.user") as conn:
        _, one_time = await add_user(conn, name, role, password=password, by="test", now=clock())
    return one_time


async def csrf_of(client: TestClient[object, object], path: str = "/login") -> str:
    resp = await client.get(path, allow_redirects=False)
    match = CSRF.search(await resp.text())
    assert match, f"no CSRF token on {path}"
    return match[1]


async def login(
    client: TestClient[object, object], name: str, password: str = PASSWORD
) -> ClientResponse:
    token = await csrf_of(client)
    return await client.post(
        "/login",
        data={"csrf": token, "name": name, "password": password},
        allow_redirects=False,
    )


async def post_form(
    client: TestClient[object, object], path: str, data: dict[str, str], *, page: str = "/"
) -> ClientResponse:
    token = await csrf_of(client, page)
    return await client.post(path, data={"csrf": token, **data}, allow_redirects=False)
