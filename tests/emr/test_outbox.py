"""The EMR outbox in a real in-process daemon: real PostgreSQL, real MLLP, EMR peers on loopback.

Bookings are produced by calling the booking hook inside a transaction exactly as the scheduling
service does (``helpers.book``); the end-to-end REST booking test is in test_booking_e2e.py.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import asyncpg
import pytest

from channels import parse as parse_hl7
from mllp.testing import FaultProxy, LoopbackPeer
from radsched.daemon import running
from radsched.emr.enqueue import open_body
from radsched.privacy import PhiBox
from tests.channels.hl7check import assert_valid_hl7
from tests.emr.helpers import (
    PHI_KEY,
    appointment_ids,
    book,
    booked,
    eventually,
    reply_with,
    settings,
)


async def rows(database_url: str, destination: str | None = None) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT * FROM hl7_outbox WHERE ($1::text IS NULL OR destination = $1) ORDER BY id",
                destination,
            )
        )
    finally:
        await conn.close()


def dead_port() -> int:
    """A loopback port with nothing listening (bound then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_booking_fans_out_per_dialect_in_order(
    data_dir: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with LoopbackPeer() as epic, LoopbackPeer() as archive:
        routes = (
            f"HOSP=127.0.0.1:{epic.port};ch10-2.5.1;receiver=EPIC^HOSP,"
            f" HOSP=127.0.0.1:{archive.port};qie-2.3;name=archive"
        )
        async with running(settings(data_dir, database_url, emr_routes=routes)) as daemon:
            await book(daemon, *(booked(n) for n in range(1, 6)))
            got_epic = await epic.wait_for_frames(5)
            got_archive = await archive.wait_for_frames(5)

            assert appointment_ids(got_epic) == [f"APT{n:06d}" for n in range(1, 6)]
            assert appointment_ids(got_archive) == [f"APT{n:06d}" for n in range(1, 6)]
            for frame in got_epic:
                assert_valid_hl7(frame)
                msg = parse_hl7(frame)
                assert (msg.version, msg.first("TQ1") is not None) == ("2.5.1", True)
                assert (msg.receiving_application, msg.receiving_facility) == ("EPIC", "HOSP")
            for frame in got_archive:
                assert_valid_hl7(frame)
                msg = parse_hl7(frame)
                assert (msg.version, msg.first("TQ1")) == ("2.3", None)
                sch = msg.first("SCH")
                assert sch is not None and sch.get(11, 4)  # SCH-11 timing in 2.3
                assert (msg.receiving_application, msg.receiving_facility) == ("EMR", "HOSP")

            async def all_delivered() -> bool:
                return all(r["state"] == "delivered" for r in await rows(database_url))

            await eventually(all_delivered, what="rows marked delivered")
            stored = await rows(database_url)
            assert len(stored) == 10
            assert {r["destination"] for r in stored} == {f"127.0.0.1:{epic.port}", "archive"}
            assert all(r["payload"] is None and r["ack_code"] == "AA" for r in stored)
            sent_ids = {parse_hl7(f).control_id for f in got_epic + got_archive}
            assert sent_ids == {r["control_id"] for r in stored}
            registry = daemon.metrics.registry
            assert (
                registry.get_sample_value(
                    "radsched_emr_delivered_total", {"destination": "archive"}
                )
                == 5
            )
    # Privacy: the patient is in the (sealed, then deleted) bodies only; never in logs or clear columns.
    assert "draining EMR destination" in caplog.text  # the daemon's log lines are captured
    clear = " ".join(str(v) for r in stored for k, v in r.items() if k != "payload")
    logged = " ".join(str(v) for rec in caplog.records for v in vars(rec).values())
    assert "archive" in logged  # extra= fields (here: destination) are included, not only messages
    for phi in ("MRN000001", "TESTPATIENT", "ALPHA", "19800101"):
        assert phi not in logged and phi not in clear


async def test_emr_down_then_back_delivers_everything_in_order(
    data_dir: Path, database_url: str
) -> None:
    async with LoopbackPeer() as emr, FaultProxy("127.0.0.1", dead_port()) as proxy:
        routes = f"*=127.0.0.1:{proxy.port}"
        async with running(settings(data_dir, database_url, emr_routes=routes)) as daemon:
            await book(daemon, *(booked(n) for n in range(1, 4)))
            await book(daemon, *(booked(n) for n in range(4, 8)))
            dest = f"127.0.0.1:{proxy.port}"

            async def retried() -> bool:
                r = await rows(database_url, dest)
                return bool(r[0]["attempts"] >= 2)

            await eventually(retried, what="failed attempts while the EMR is down")
            stored = await rows(database_url, dest)
            assert all(r["state"] == "pending" for r in stored)
            assert stored[0]["last_error"]
            assert daemon.emr is not None
            await daemon.emr.refresh_stats()
            registry = daemon.metrics.registry
            assert registry.get_sample_value("radsched_emr_queued", {"destination": dest}) == 7
            assert (
                registry.get_sample_value(
                    "radsched_emr_oldest_pending_age_seconds", {"destination": dest}
                )
                or 0
            ) > 0

            proxy.target_port = emr.port  # the EMR is back
            frames = await emr.wait_for_frames(7, timeout=15)
            assert appointment_ids(frames) == [f"APT{n:06d}" for n in range(1, 8)]
            # Only the head was ever attempted while down: one MSH-10 per appointment, no gaps.
            assert len({parse_hl7(f).control_id for f in frames}) == 7

            async def drained() -> bool:
                return all(r["state"] == "delivered" for r in await rows(database_url, dest))

            await eventually(drained, what="queue drained")
            assert daemon.emr is not None
            assert await daemon.emr.readiness() is None


async def test_ae_is_retried_then_dead_lettered_and_the_queue_moves_on(
    data_dir: Path, database_url: str
) -> None:
    accept = reply_with("AA")
    reject = reply_with("AE")

    def reply(payload: bytes) -> bytes:
        return reject(payload) if b"APT000001" in payload else accept(payload)

    async with LoopbackPeer(reply) as emr:
        routes = f"*=127.0.0.1:{emr.port}"
        cfg = settings(data_dir, database_url, emr_routes=routes, emr_max_rejections=3)
        async with running(cfg) as daemon:
            await book(daemon, booked(1), booked(2))
            frames = await emr.wait_for_frames(4)
            ids = appointment_ids(frames)
            assert ids == ["APT000001"] * 3 + ["APT000002"]
            assert len({parse_hl7(f).control_id for f in frames[:3]}) == 1  # same MSH-10 each time

            async def settled() -> bool:
                return [r["state"] for r in await rows(database_url)] == ["dead", "delivered"]

            await eventually(settled, what="dead letter then delivery")
            dead = (await rows(database_url))[0]
            assert dead["rejections"] == 3 and dead["attempts"] == 3
            assert "rejected 3 times" in dead["last_error"] and "AE" in dead["last_error"]
            assert "000123" not in dead["last_error"]  # identifiers echoed by the EMR are masked
            assert dead["payload"] is not None  # kept for `radsched outbox retry`
            body = open_body(
                PhiBox.from_secret(PHI_KEY),
                dead["destination"],
                dead["control_id"],
                dead["payload"],
            )
            assert body == frames[0]
            registry = daemon.metrics.registry
            dest = f"127.0.0.1:{emr.port}"
            assert (
                registry.get_sample_value(
                    "radsched_emr_dead_lettered_total", {"destination": dest, "reason": "ae"}
                )
                == 1
            )
            assert (
                registry.get_sample_value(
                    "radsched_emr_retries_total", {"destination": dest, "reason": "ae"}
                )
                == 2
            )


async def test_ar_and_timeouts_are_retried_until_accepted(
    data_dir: Path, database_url: str
) -> None:
    answers = ["AR", "AR", "AA"]

    def reply(payload: bytes) -> bytes:
        return reply_with(answers.pop(0) if answers else "AA")(payload)

    async with LoopbackPeer(reply) as emr:
        cfg = settings(data_dir, database_url, emr_routes=f"*=127.0.0.1:{emr.port}")
        async with running(cfg) as daemon:
            await book(daemon, booked(1))
            frames = await emr.wait_for_frames(3)
            assert len({parse_hl7(f).control_id for f in frames}) == 1

            async def delivered() -> bool:
                return [r["state"] for r in await rows(database_url)] == ["delivered"]

            await eventually(delivered, what="delivery after two AR")
            row = (await rows(database_url))[0]
            assert row["attempts"] == 3 and row["rejections"] == 0


async def test_unrouted_facility_is_dead_lettered_with_an_alert_metric(
    data_dir: Path, database_url: str
) -> None:
    async with LoopbackPeer() as emr:
        cfg = settings(data_dir, database_url, emr_routes=f"HOSP=127.0.0.1:{emr.port}")
        async with running(cfg) as daemon:
            await book(daemon, booked(1, facility="ELSEWHERE"), booked(2, facility=None))
            await book(daemon, booked(3, facility="HOSP"))
            frames = await emr.wait_for_frames(1)
            assert appointment_ids(frames) == ["APT000003"]
            dead = [r for r in await rows(database_url) if r["destination"] == "unrouted"]
            assert [r["state"] for r in dead] == ["dead", "dead"]
            assert "no EMR route for facility 'ELSEWHERE'" in dead[0]["last_error"]
            assert dead[0]["appointment_id"] == "APT000001"
            registry = daemon.metrics.registry
            assert (
                registry.get_sample_value("radsched_emr_unrouted_total", {"origin": "booking"}) == 2
            )
            assert daemon.emr is not None
            await daemon.emr.refresh_stats()
            assert (
                registry.get_sample_value("radsched_emr_dead_letters", {"destination": "unrouted"})
                == 2
            )


async def test_readiness_names_a_destination_failing_too_long(
    data_dir: Path, database_url: str
) -> None:
    port = dead_port()
    cfg = settings(
        data_dir, database_url, emr_routes=f"*=127.0.0.1:{port}", emr_failing_alert_s=0.1
    )
    async with running(cfg) as daemon:
        await book(daemon, booked(1))
        assert daemon.emr is not None

        async def reported() -> bool:
            return (await daemon.readiness.run()).get("emr") is not None

        await eventually(reported, what="readiness failure")
        reason = (await daemon.readiness.run())["emr"]
        assert reason is not None and f"127.0.0.1:{port} failing for" in reason


async def test_sink_receives_when_no_routes_are_configured(
    data_dir: Path, database_url: str
) -> None:
    async with running(settings(data_dir, database_url)) as daemon:
        assert daemon.emr is not None and daemon.emr.sink is not None
        await book(daemon, booked(1), booked(2))

        async def received() -> bool:
            return (
                daemon.emr is not None
                and daemon.emr.sink is not None
                and len(daemon.emr.sink.received) == 2
            )

        await eventually(received, what="sink delivery")
        assert [r.appointment_id for r in daemon.emr.sink.received] == ["APT000001", "APT000002"]
        assert {r["destination"] for r in await rows(database_url)} == {"sink"}


@pytest.mark.parametrize(
    "routes",
    ["HOSP=host:99999", " , "],  # the grammar itself: test_routes.py
)
async def test_bad_routes_stop_startup_naming_the_setting(
    data_dir: Path, database_url: str, routes: str
) -> None:
    from radsched.errors import ConfigError

    with pytest.raises(ConfigError, match="RADSCHED_EMR_ROUTES"):
        async with running(settings(data_dir, database_url, emr_routes=routes)):
            pass


async def test_losing_the_coordinator_session_stops_then_resumes_sending(
    data_dir: Path, database_url: str
) -> None:
    async with LoopbackPeer() as emr:
        cfg = settings(data_dir, database_url, emr_routes=f"*=127.0.0.1:{emr.port}")
        async with running(cfg) as daemon:
            await book(daemon, booked(1))
            await emr.wait_for_frames(1)
            admin = await asyncpg.connect(database_url)
            try:
                # What a network partition or a database restart does to the lock-holding session.
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'radsched-emr' AND datname = current_database()"
                )
            finally:
                await admin.close()
            assert killed == 1
            await book(daemon, booked(2), booked(3))
            frames = await emr.wait_for_frames(3, timeout=20)
            assert appointment_ids(frames) == ["APT000001", "APT000002", "APT000003"]
