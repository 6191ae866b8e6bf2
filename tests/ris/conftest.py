"""Fixtures for the RIS gateway tests: a simulated RIS on loopback with a fixed clock, and an in-process
daemon pointed at it with an HTTP client that checks every response against /api/openapi.json."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels import OrderRef, PatientName
from radsched.daemon import Daemon, running
from radsched.settings import Settings
from radsched.simris import SimRis, default_calendar
from tests.ris.openapi_check import OpenApiChecker

# Monday 2026-11-30 07:00 in New York: the simulated RIS offers the whole day and the weeks after.
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = "2026-11-30"
KEYS = ("key-one-0123456789", "key-two-0123456789")
HASH_KEY = secrets.token_hex(32)
PHI_KEY = secrets.token_hex(32)


def fixed_clock() -> datetime:
    return NOW


@pytest.fixture
async def sim() -> AsyncIterator[SimRis]:
    ris = SimRis(default_calendar(clock=fixed_clock))
    await ris.start()
    yield ris
    await ris.aclose()


@dataclass
class Gateway:
    """An in-process daemon and an HTTP client whose every response is checked against the OpenAPI doc."""

    daemon: Daemon
    session: aiohttp.ClientSession
    base: str
    checker: OpenApiChecker

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
        key: str | None = KEYS[0],
    ) -> tuple[int, Any]:
        headers = {"X-API-Key": key} if key is not None else {}
        async with self.session.request(
            method, self.base + path, params=params, json=json, data=data, headers=headers
        ) as response:
            if response.content_type == "application/json":
                body: Any = await response.json()
            else:
                body = await response.text()
            self.checker.check(method, path, response.status, response.content_type, body)
            return response.status, body

    async def locations(self, modality: str = "CT", **kw: Any) -> tuple[int, Any]:
        return await self.call("GET", "/api/ris/locations", params={"modality": modality}, **kw)

    async def slots(
        self, location: str = "DTWN", modality: str = "CT", date: str = DAY, **extra: str
    ) -> tuple[int, Any]:
        params = {"location": location, "modality": modality, "date": date, **extra}
        return await self.call("GET", "/api/ris/available-slots", params=params)

    async def book(self, **body: str) -> tuple[int, Any]:
        return await self.call("POST", "/api/ris/book-appointment", json=body)

    async def add_order(self, order_id: str, mrn: str = "MRN00001", modality: str = "CT") -> None:
        ref = OrderRef(
            order_id=order_id,
            mrn=mrn,
            placer_order_id=order_id,
            filler_order_id="ACC" + order_id,
            procedure_code="74177",
            procedure_text="CT ABD/PELVIS W CONTRAST",
            procedure_system="C4",
            modality=modality,
            name=PatientName("TESTPATIENT", "ALPHA"),
            sex="F",
        )
        async with self.daemon.db.transaction("test.order") as conn:
            stored = await self.daemon.orders.insert(
                conn,
                ref,
                source="api",
                facility="DTWN",
                phone="+15555550123",
                correlation_id="test",
                received_at=NOW,
            )
        assert stored is not None


GatewayFactory = Callable[..., AbstractAsyncContextManager[Gateway]]


def settings_for(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "http_listen": "127.0.0.1:0",
        "mllp_listen": "127.0.0.1:0",
        "api_keys": ",".join(KEYS),
        "phone_hash_key": HASH_KEY,
        "phi_key": PHI_KEY,
        "ris_timeout_s": 2.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def gateway(data_dir: Path, database_url: str) -> GatewayFactory:
    @asynccontextmanager
    async def start(
        clock: Callable[[], datetime] | None = None, **overrides: Any
    ) -> AsyncIterator[Gateway]:
        settings = settings_for(data_dir, database_url, **overrides)
        daemon_clock = clock or (lambda: datetime.now(UTC))
        async with (
            running(settings, clock=daemon_clock) as daemon,
            aiohttp.ClientSession() as session,
        ):
            host, port = daemon.listening["http"].host, daemon.listening["http"].port
            base = f"http://{host}:{port}"
            async with session.get(base + "/api/openapi.json") as response:
                checker = OpenApiChecker(await response.json())
            yield Gateway(daemon, session, base, checker)

    return start


def booking_for(order_id: str, slot: dict[str, Any], mrn: str = "MRN00001") -> dict[str, str]:
    return {
        "order_id": order_id,
        "mrn": mrn,
        "modality": slot["modality"],
        "location": slot["location"],
        "slot_id": slot["id"],
    }
