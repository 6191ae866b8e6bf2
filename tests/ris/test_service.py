"""The scheduling service seen by the other components: caches, hooks, AR retry, the in-process simulated
RIS, site configuration, metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mllp.testing import FaultProxy
from radsched.errors import ConfigError
from radsched.scheduling.cache import SingleFlight, TtlCache
from radsched.scheduling.errors import SlotUnavailable
from radsched.scheduling.service import BookedAppointment, BookingInput
from radsched.simris import SimRis
from tests.ris.conftest import Gateway, GatewayFactory, booking_for


async def _next_open_slot(gw: Gateway, location: str, modality: str) -> dict[str, Any]:
    """The in-process RIS runs on the real clock: the first slot in the coming week."""
    today = gw.daemon.clock().astimezone(gw.daemon.tz).date()
    status, body = await gw.slots(location, modality, today.isoformat(), days="7")
    assert status == 200 and body["slots"]
    return dict(body["slots"][0])


async def test_ttl_cache_single_flight_and_errors_not_cached() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10, monotonic=lambda: now[0])
    calls = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    waiters = [asyncio.ensure_future(cache.get("k", load)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [1] * 5 and calls == 1
    assert await cache.get("k", load) == 1 and calls == 1
    now[0] = 10.0
    assert await cache.get("k", load) == 2

    async def fail() -> int:
        raise RuntimeError("RIS down")

    with pytest.raises(RuntimeError):
        await cache.get("x", fail)
    assert cache.peek("x") is None

    flight: SingleFlight[str, int] = SingleFlight()
    caller = asyncio.ensure_future(flight.run("k", load))
    other = asyncio.ensure_future(flight.run("k", load))
    await asyncio.sleep(0)
    caller.cancel()  # the first caller goes away: the load continues for the other
    assert await other == 3


async def test_locations_are_cached(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        for _ in range(3):
            assert (await gw.locations("CT"))[0] == 200
        await gw.slots()
        assert len(sim.frames_of("QRY^Q01")) == 1
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", location_cache_s=0) as gw:
        for _ in range(3):
            assert (await gw.locations("CT"))[0] == 200
        assert len(sim.frames_of("QRY^Q01")) == 4


async def test_booking_hooks_run_once_inside_the_booking_transaction(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    seen: list[tuple[BookedAppointment, bool, str]] = []

    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:

        async def hook(conn: asyncpg.Connection, booked: BookedAppointment) -> None:
            state = await conn.fetchval(
                "SELECT state FROM bookings WHERE id = $1", booked.booking_id
            )
            seen.append((booked, conn.is_in_transaction(), state))

        gw.daemon.scheduling.add_booking_hook(hook)
        await gw.add_order("PLC1")
        service = gw.daemon.scheduling
        slots = await service.slots(
            "DTWN", "ct", start=sim.calendar.clock(), end=sim.calendar.clock().replace(hour=23)
        )
        request = BookingInput("PLC1", "MRN00001", slots[0].id, "DTWN", "CT", "sms", "cid-1")
        booked = await service.book(request)
        again = await service.book(request)
    assert len(seen) == 1
    hooked, in_transaction, state = seen[0]
    assert in_transaction and state == "booked"
    assert not booked.replayed and again.replayed
    assert hooked.appointment == booked.appointment == again.appointment
    assert booked.facility == "DTWN"
    assert booked.order.mrn == "MRN00001" and booked.order.procedure_code == "74177"
    assert booked.appointment.location.name == "Downtown Imaging"
    assert booked.appointment.confirmation_code
    assert booked.appointment.filler_appointment_id.startswith("SIM")


async def test_ar_rejection_is_409_and_the_same_request_later_tries_again(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", ris_dialect="qie-2.3") as gw:
        await gw.add_order("PLC1")
        _, listed = await gw.slots()
        request = booking_for("PLC1", listed["slots"][0])
        sim.set_faults(nak="AR")
        status, body = await gw.book(**request)
        assert (status, body["error"]["code"]) == (409, "slot_unavailable")
        sim.clear_faults()
        status, body = await gw.book(**request)
        assert status == 201
        first, second = sim.frames_of("ORM^O01")
        assert first != second  # a new control id: the RIS would answer the old one with its AR
        service = gw.daemon.scheduling
        with pytest.raises(SlotUnavailable):
            await service.book(
                BookingInput("PLC1", "MRN00001", "DTWN-CT-209901010800", "DTWN", "CT", "sms")
            )


async def test_in_process_simulated_ris_when_ris_addr_is_unset(gateway: GatewayFactory) -> None:
    async with gateway(ris_addr=None) as gw:
        assert "sim-ris" in gw.daemon.listening
        status, body = await gw.call("GET", "/readyz", key=None)
        assert status == 200 and body["checks"]["ris"] == "ok"
        status, body = await gw.locations("MR")
        assert status == 200 and {loc["id"] for loc in body["locations"]} == {"NRTH", "WEST"}
        await gw.add_order("PLC1", modality="MR")
        slot = await _next_open_slot(gw, "NRTH", "MR")
        status, _booked = await gw.book(**booking_for("PLC1", slot))
        assert status == 201


async def test_site_dialect_overrides_and_ris_party_from_the_toml_file(
    gateway: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimRis
) -> None:
    config = tmp_path / "radsched.toml"
    config.write_text(
        '[dialect]\n"booking.slot_id" = "OBR-19"\n"booking.appointment_id" = "OBR-18"\n'
        '[ris]\napplication = "SYNAPSERIS"\nfacility = "RADCO"\n'
    )
    monkeypatch.setenv("RADSCHED_CONFIG", str(config))
    async with gateway(ris_addr=None, ris_dialect="qie-2.3") as gw:
        assert gw.daemon.scheduling.dialect.remote.application == "SYNAPSERIS"
        await gw.add_order("PLC1")
        slot = await _next_open_slot(gw, "DTWN", "CT")
        status, _ = await gw.book(**booking_for("PLC1", slot))
        assert status == 201  # the in-process RIS reads the slot id where the site put it

    config.write_text('[ris]\nhost = "x"\n')
    with pytest.raises(ConfigError, match=r"\[ris\]: unknown key 'host'"):
        async with gateway(ris_addr=f"127.0.0.1:{sim.port}"):
            pass
    config.write_text('[dialect]\n"booking.slot_id" = "ZZZ-1"\n')
    with pytest.raises(ConfigError, match="booking.slot_id"):
        async with gateway(ris_addr=f"127.0.0.1:{sim.port}"):
            pass


async def test_every_exchange_is_measured(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", location_cache_s=0) as gw:
        await gw.locations()
        sim.set_faults(nak="AE")
        await gw.locations()
        sim.clear_faults()
        _, text = await gw.call("GET", "/metrics", key=None)
    assert (
        'radsched_hl7_exchanges_total{message_type="QRY^Q01",outcome="AA",peer="ris"} 1.0' in text
    )
    assert (
        'radsched_hl7_exchanges_total{message_type="QRY^Q01",outcome="AE",peer="ris"} 1.0' in text
    )
    assert 'radsched_hl7_exchange_seconds_count{message_type="QRY^Q01",peer="ris"} 2.0' in text
    assert 'radsched_mllp_round_trip_seconds_count{peer="ris"}' in text


async def test_openapi_document_is_well_formed(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        gw.checker.check_document()
        status, doc = await gw.call("GET", "/api/openapi.json", key=None)
        assert status == 200 and doc["openapi"] == "3.1.0"
        for path in (
            "/api/ris/locations",
            "/api/ris/available-slots",
            "/api/ris/book-appointment",
            "/healthz",
            "/readyz",
            "/metrics",
        ):
            assert path in doc["paths"]
        assert (await gw.call("GET", "/healthz", key=None))[0] == 200
        assert (await gw.call("GET", "/metrics", key=None))[0] == 200


async def test_slot_lists_are_not_kept_unless_the_site_opts_in(
    gateway: GatewayFactory, sim: SimRis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        for _ in range(2):
            assert (await gw.slots())[0] == 200
        assert len(sim.frames_of("SQM^S25")) == 2

    config = tmp_path / "radsched.toml"
    config.write_text("[ris]\nslot_cache_s = 30\n")
    monkeypatch.setenv("RADSCHED_CONFIG", str(config))
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        await gw.add_order("PLC1")
        _, listed = await gw.slots()
        for _ in range(3):
            assert (await gw.slots())[1] == listed
        assert len(sim.frames_of("SQM^S25")) == 3
        # Our own booking at DTWN drops the cached DTWN lists: the booked slot is not offered again.
        assert (await gw.book(**booking_for("PLC1", listed["slots"][0])))[0] == 201
        _, after = await gw.slots()
        assert after["slots"] == listed["slots"][1:]
        assert len(sim.frames_of("SQM^S25")) == 4

    config.write_text("[ris]\nslot_cache_s = -1\n")
    with pytest.raises(ConfigError, match="slot_cache_s"):
        async with gateway(ris_addr=f"127.0.0.1:{sim.port}"):
            pass


async def test_the_slot_memo_asks_the_ris_every_time_and_never_offers_a_booked_slot(
    gateway: GatewayFactory, sim: SimRis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The memo keeps the slots read from an answer's body, not the RIS's calendar: every query
    # still goes to the RIS, and an answer that changed (a slot booked meanwhile) is read afresh.
    # radsched_ris_slot_answers_total tells a site how often answers repeat: (memo, parsed).
    config = tmp_path / "radsched.toml"
    for order, memo, counts in (("PLC1", "", (1, 2)), ("PLC2", "slot_memo = 0\n", (0, 3))):
        config.write_text("[ris]\n" + memo)
        monkeypatch.setenv("RADSCHED_CONFIG", str(config))
        async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
            await gw.add_order(order)
            before = len(sim.frames_of("SQM^S25"))
            _, listed = await gw.slots()
            assert (await gw.slots())[1] == listed
            assert len(sim.frames_of("SQM^S25")) == before + 2
            assert (await gw.book(**booking_for(order, listed["slots"][0])))[0] == 201
            _, after = await gw.slots()
            assert after["slots"] == listed["slots"][1:]
            _, text = await gw.call("GET", "/metrics", key=None)
        for read, count in zip(("memo", "parsed"), counts, strict=True):
            assert f'radsched_ris_slot_answers_total{{read="{read}"}} {count:.1f}' in text

    for bad in ("-1", "'64'", "1.5", "5000"):
        config.write_text(f"[ris]\nslot_memo = {bad}\n")
        with pytest.raises(ConfigError, match="slot_memo"):
            async with gateway(ris_addr=f"127.0.0.1:{sim.port}"):
                pass


async def test_pending_bookings_are_resolved_in_the_background_or_given_up(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    now = [datetime.now(UTC)]
    async with (
        FaultProxy(sim.host, sim.port) as proxy,
        gateway(clock=lambda: now[0], ris_addr=f"127.0.0.1:{proxy.port}", ris_timeout_s=1.0) as gw,
    ):
        await gw.add_order("PLC1")
        await gw.add_order("PLC2", mrn="MRN00002")
        _, listed = await gw.slots()
        first, second = listed["slots"][:2]
        proxy.stall()
        assert (await gw.book(**booking_for("PLC1", first)))[0] == 504
        service = gw.daemon.scheduling
        # Too recent for a background pass (it could still be in flight elsewhere): untouched.
        assert await service.resolve_pending(untouched_for=timedelta(minutes=1)) == 0
        proxy.resume()
        now[0] += timedelta(minutes=2)
        assert await service.resolve_pending(untouched_for=timedelta(minutes=1)) == 1
        async with gw.daemon.db.transaction("test") as conn:
            assert await conn.fetchval("SELECT state FROM bookings") == "booked"
        assert sim.duplicates == 1 and len(sim.bookings) == 1

        # A booking the RIS never answers is given up after a day, for staff to follow up.
        proxy.stall()
        assert (await gw.book(**booking_for("PLC2", second, mrn="MRN00002")))[0] == 504
        now[0] += timedelta(hours=25)
        assert await service.resolve_pending() == 0
        async with gw.daemon.db.transaction("test") as conn:
            states = await conn.fetch("SELECT state, reason FROM bookings ORDER BY created_at")
        assert [r["state"] for r in states] == ["booked", "failed"]
        assert "never answered" in states[1]["reason"]
        proxy.resume()
