"""Roles on a shared database: which run now, and queued work whose role no daemon runs after a change."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from radsched.beside.components import (
    RoleMetrics,
    engine_secrets,
    open_scheduling_backend,
    open_shadow,
    role_readiness,
)
from radsched.scheduling.rest_backend import RestMetrics
from radsched.settings import Settings
from radsched.storage.db import Database
from radsched.storage.roles import running_roles, session_name
from tests.waiting import eventually


async def _connect(database_url: str, *roles: str) -> Database:
    return await Database.connect(
        database_url,
        registry=None,
        min_size=1,
        max_size=1,
        application_name=session_name(roles),  # type: ignore[arg-type]
    )


async def test_queued_siu_without_an_emr_daemon_is_reported(database_url: str) -> None:
    gateway = await _connect(database_url, "gateway", "sms")
    try:
        check = role_readiness(gateway)
        assert await check() is None  # nothing queued: nothing to report
        async with gateway.transaction("test.outbox") as conn:
            assert await running_roles(conn) == {"gateway", "sms"}
            await conn.execute(
                """INSERT INTO hl7_outbox (destination, control_id, message_type, correlation_id)
                   VALUES ('epic', 'C1', 'SIU^S12', 't'), ('epic', 'C2', 'SIU^S12', 't')"""
            )
        assert await check() == (
            "SIU outbox: 2 queued and no daemon on this database runs the emr role"
        )
        emr = await _connect(database_url, "emr")  # an emr daemon comes (back) up
        try:
            async with gateway.transaction("test.roles") as conn:
                assert await running_roles(conn) == {"gateway", "sms", "emr"}
            assert await check() is None
        finally:
            await emr.close()

        async def reported_again() -> bool:  # its backends end a moment after the client closes
            return await check() is not None

        await eventually(reported_again, what="the emr role gone")  # and the rows are still there
    finally:
        await gateway.close()


def test_roles_in_metrics() -> None:
    registry = CollectorRegistry()
    RoleMetrics(registry, ("gateway", "emr"))
    got = {
        r: registry.get_sample_value("radsched_role", {"role": r})
        for r in ("gateway", "sms", "emr")
    }
    assert got == {"gateway": 1, "sms": 0, "emr": 1}


async def test_the_backends_are_built_from_the_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        roles="sms",
        scheduling_backend="rest",
        scheduling_url="http://qie.internal:8080/radscheduler/",
        scheduling_api_key="engine-key-0123456789",
        scheduling_api_key_header="X-QIE-Key",
        scheduling_timeout_s=3,
    )
    async with AsyncExitStack() as stack:
        backend = await open_scheduling_backend(
            settings, stack, tz=ZoneInfo("America/New_York"), metrics=RestMetrics(None)
        )
        ep = backend._client.endpoint
        assert (ep.base_url, ep.api_key_header, ep.timeout_s) == (
            "http://qie.internal:8080/radscheduler",
            "X-QIE-Key",
            3,
        )
    assert "plain http" in caplog.text and "engine-key" not in caplog.text
    assert engine_secrets(settings) == ["engine-key-0123456789"]


async def test_without_shadow_url_the_service_is_left_as_it_is(
    tmp_path: Path, db: Database
) -> None:
    settings = Settings(data_dir=tmp_path)
    here = object()
    async with AsyncExitStack() as stack:
        got = await open_shadow(
            settings,
            stack,
            here,  # type: ignore[arg-type]
            db=db,
            registry=None,
            clock=lambda: datetime.now(UTC),
            tz=UTC,
            metrics=RestMetrics(None),
        )
    assert got is here
