"""Roles on a shared database: which run now, and queued work whose role no daemon runs after a change."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from radsched.beside import RoleMetrics, role_readiness
from radsched.storage.db import Database
from radsched.storage.roles import running_roles, session_name
from tests.emr.helpers import eventually


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
