"""An in-process daemon for the security tests: simulated RIS in-process, Twilio double, known keys.

Only outside peers are faked (Twilio, EMRs); everything of ours runs for real on PostgreSQL and
loopback sockets. ``secured(**overrides)`` starts one with any settings changed (rate limits,
timeouts), so each test states the limits it relies on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from radsched.daemon import Daemon, running
from radsched.settings import Settings
from tests.smsflow.conftest import settings_for
from tests.twilio_double import TwilioDouble

PUBLIC_URL = "https://sched.example.org"
API_KEY = "security-api-key-" + "1" * 20
OTHER_API_KEY = "security-api-key-" + "2" * 20
ORDER_TOKEN = "security-order-token-" + "3" * 20


def security_settings(
    data_dir: Path, database_url: str, twilio: TwilioDouble, **overrides: Any
) -> Settings:
    # The SMS flow's settings (Twilio double, fresh keys, no quiet hours) plus our credentials.
    values: dict[str, Any] = {
        "public_url": PUBLIC_URL,
        "api_keys": f"{API_KEY},{OTHER_API_KEY}",
        "order_tokens": ORDER_TOKEN,
        "quiet_hours": "off",
        **overrides,
    }
    return settings_for(database_url, data_dir, twilio, **values)


@dataclass
class Secured:
    daemon: Daemon
    twilio: TwilioDouble
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        addr = self.daemon.listening["http"]
        return f"http://{addr.host}:{addr.port}"

    @property
    def mllp(self) -> tuple[str, int]:
        addr = self.daemon.listening["mllp"]
        return addr.host, addr.port

    async def get(
        self,
        path: str,
        *,
        key: str | None = API_KEY,
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> tuple[int, CIMultiDict[str], Any]:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["X-API-Key"] = key
        async with self.http.get(self.base + path, params=params, headers=hdrs) as response:
            return response.status, CIMultiDict(response.headers), await _body(response)

    async def post(
        self, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, CIMultiDict[str], Any]:
        async with self.http.post(self.base + path, headers=headers or {}, **kw) as response:
            return response.status, CIMultiDict(response.headers), await _body(response)

    async def order(self, body: dict[str, str], token: str = ORDER_TOKEN) -> tuple[int, Any]:
        status, _, payload = await self.post(
            "/api/orders", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        return status, payload


async def _body(response: aiohttp.ClientResponse) -> Any:
    if response.content_type == "application/json":
        return await response.json()
    return await response.text()


SecuredFactory = Callable[..., AbstractAsyncContextManager[Secured]]


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioDouble]:
    async with TwilioDouble() as double:
        yield double


@pytest.fixture
def secured(data_dir: Path, database_url: str, twilio: TwilioDouble) -> SecuredFactory:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Secured]:
        settings = security_settings(data_dir, database_url, twilio, **overrides)
        async with running(settings) as daemon, aiohttp.ClientSession() as http:
            yield Secured(daemon, twilio, http)

    return start
