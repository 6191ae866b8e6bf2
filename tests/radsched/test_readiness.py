"""/readyz follows the database: 503 with the reason while it is down, 200 again when it returns."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from radsched.daemon import running
from radsched.settings import Settings
from radsched.storage import embedded


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, http_listen="127.0.0.1:0", mllp_listen="127.0.0.1:0")


async def test_readyz_reports_database_down_and_recovers(settings: Settings) -> None:
    async with running(settings) as daemon, aiohttp.ClientSession() as http:
        url = f"http://{daemon.listening['http']}/readyz"
        async with http.get(url) as resp:
            assert resp.status == 200

        pg = embedded.EmbeddedPostgres(
            root=daemon.settings.data_dir / "pg",
            socket_dir=daemon.settings.data_dir / "pg" / "run",
            run_as=embedded.server_account(),
            started_here=True,
        )
        await embedded.stop(pg)
        async with http.get(url) as resp:
            assert resp.status == 503
            body = await resp.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"] != "ok"

        await embedded.start(daemon.settings.data_dir / "pg")
        # asyncpg discards a broken pooled connection on first use; allow a bounded number of probes.
        statuses = []
        for _ in range(5):
            async with http.get(url) as resp:
                statuses.append(resp.status)
                if resp.status == 200:
                    break
        assert statuses[-1] == 200, statuses
