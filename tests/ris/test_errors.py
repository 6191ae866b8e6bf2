"""Error statuses of the REST facade (DESIGN.md section 6): 400 naming the field, 404, 409, 502, 503, 504."""

from __future__ import annotations

from typing import Any

from mllp.testing import FaultProxy
from radsched.simris import SimRis
from tests.ris.conftest import DAY, GatewayFactory, booking_for

GOOD_BOOKING = {
    "order_id": "PLC1",
    "mrn": "MRN00001",
    "modality": "CT",
    "location": "DTWN",
    "slot_id": "DTWN-CT-202611300800",
}

BAD_QUERIES: list[tuple[str, dict[str, str], str]] = [
    ("/api/ris/locations", {}, "modality"),
    ("/api/ris/locations", {"modality": "C T"}, "modality"),
    ("/api/ris/locations", {"modality": "X" * 17}, "modality"),
    ("/api/ris/available-slots", {"modality": "CT", "date": DAY}, "location"),
    ("/api/ris/available-slots", {"location": "DTWN", "date": DAY}, "modality"),
    ("/api/ris/available-slots", {"location": "DTWN", "modality": "CT"}, "date"),
    (
        "/api/ris/available-slots",
        {"location": "DTWN", "modality": "CT", "date": "30/11/2026"},
        "date",
    ),
    (
        "/api/ris/available-slots",
        {"location": "DTWN", "modality": "CT", "date": "2026-02-30"},
        "date",
    ),
    (
        "/api/ris/available-slots",
        {"location": "DTWN", "modality": "CT", "date": DAY, "days": "0"},
        "days",
    ),
    (
        "/api/ris/available-slots",
        {"location": "DTWN", "modality": "CT", "date": DAY, "days": "32"},
        "days",
    ),
    (
        "/api/ris/available-slots",
        {"location": "DTWN", "modality": "CT", "date": DAY, "days": "two"},
        "days",
    ),
    ("/api/ris/available-slots", {"location": "L" * 65, "modality": "CT", "date": DAY}, "location"),
    (
        "/api/ris/available-slots",
        {"location": "DTWN", "modality": "CT", "date": DAY, "limit": "0"},
        "limit",
    ),
    (
        "/api/ris/available-slots",
        {"location": "DTWN", "modality": "CT", "date": DAY, "limit": "501"},
        "limit",
    ),
]


async def test_invalid_query_parameter_is_400_naming_it(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    # One daemon for every case: a fresh database per case would cost more than the cases.
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        for path, params, field in BAD_QUERIES:
            status, body = await gw.call("GET", path, params=params)
            assert status == 400, (path, params)
            assert body["error"]["code"] == "invalid_request"
            assert body["error"]["message"].startswith(f"{field}: "), (params, body)
        assert not sim.received  # nothing reached the RIS


BAD_BODIES: list[tuple[Any, str]] = [
    *[({k: v for k, v in GOOD_BOOKING.items() if k != name}, name) for name in GOOD_BOOKING],
    ({**GOOD_BOOKING, "modality": "C/T"}, "modality"),
    ({**GOOD_BOOKING, "slot_id": "S" * 65}, "slot_id"),
    ({**GOOD_BOOKING, "order_id": ""}, "order_id"),
    ({**GOOD_BOOKING, "mrn": 12345}, "mrn"),
    ({**GOOD_BOOKING, "location": "DT\nWN"}, "location"),
    ([GOOD_BOOKING], "body"),
    (b"{not json", "body"),
]


async def test_invalid_booking_body_is_400_naming_the_field(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        for body, field in BAD_BODIES:
            if isinstance(body, bytes):
                status, answer = await gw.call("POST", "/api/ris/book-appointment", data=body)
            else:
                status, answer = await gw.call("POST", "/api/ris/book-appointment", json=body)
            assert status == 400, body
            assert answer["error"]["message"].startswith(f"{field}: "), (body, answer)
            assert "MRN00001" not in answer["error"]["message"]
        assert not sim.received


async def test_unknown_location_and_order_are_404(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        status, body = await gw.slots("NOWHERE")
        assert (status, body["error"]["code"]) == (404, "unknown_location")
        # WEST offers no CT.
        status, body = await gw.slots("WEST", "CT")
        assert (status, body["error"]["code"]) == (404, "unknown_location")

        _, listed = await gw.slots()
        slot = listed["slots"][0]
        status, body = await gw.book(**booking_for("NO-SUCH-ORDER", slot))
        assert (status, body["error"]["code"]) == (404, "unknown_order")

        await gw.add_order("PLC1", mrn="MRN00001")
        status, body = await gw.book(**booking_for("PLC1", slot, mrn="MRN99999"))
        assert (status, body["error"]["code"]) == (404, "unknown_order")
        assert "MRN0000" not in body["error"]["message"]

        status, body = await gw.book(**{**booking_for("PLC1", slot), "location": "NOWHERE"})
        assert (status, body["error"]["code"]) == (404, "unknown_location")
        assert not sim.frames_of("SRM^S01")


async def test_slot_just_taken_is_409(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        await gw.add_order("PLC1")
        await gw.add_order("PLC2", mrn="MRN00002")
        _, listed = await gw.slots()
        first, second = listed["slots"][0], listed["slots"][1]
        # Someone at the RIS desk takes the second slot after we listed it: the RIS answers AE.
        taken = sim.calendar.book(second["id"], placer_appointment_id="DESK", order_id="DESK")
        assert not isinstance(taken, str)
        status, body = await gw.book(**booking_for("PLC1", second))
        assert (status, body["error"]["code"]) == (409, "slot_unavailable")
        assert "already booked" in body["error"]["message"]
        # The rejection is stored: asking again answers 409 without another HL7 booking.
        assert (await gw.book(**booking_for("PLC1", second)))[0] == 409
        assert len(sim.frames_of("SRM^S01")) == 1

        # A slot we booked ourselves a moment ago: 409 for the next order, without an HL7 booking.
        assert (await gw.book(**booking_for("PLC1", first)))[0] == 201
        status, body = await gw.book(**booking_for("PLC2", first, mrn="MRN00002"))
        assert (status, body["error"]["code"]) == (409, "slot_unavailable")
        assert len(sim.frames_of("SRM^S01")) == 2
        assert len(sim.bookings) == 2

        # A slot id the RIS never offered is 409 too.
        bogus = {**booking_for("PLC2", first, mrn="MRN00002"), "slot_id": "DTWN-CT-209901010800"}
        assert (await gw.book(**bogus))[0] == 409
        assert len(sim.frames_of("SRM^S01")) == 2


async def test_ris_stopped_is_503_and_not_ready(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", location_cache_s=0) as gw:
        status, body = await gw.call("GET", "/readyz", key=None)
        assert status == 200 and body["checks"]["ris"] == "ok"
        assert (await gw.locations())[0] == 200
        await sim.aclose()
        status, body = await gw.locations()
        assert (status, body["error"]["code"]) == (503, "ris_unavailable")
        status, body = await gw.slots()
        assert status == 503
        status, body = await gw.call("GET", "/readyz", key=None)
        assert status == 503
        assert "unreachable" in body["checks"]["ris"]
        assert body["checks"]["database"] == "ok"
        assert not gw.daemon.scheduling.reachable  # what the SMS engine reads to defer at once


async def test_ris_stalled_is_504(gateway: GatewayFactory, sim: SimRis) -> None:
    async with (
        FaultProxy(sim.host, sim.port) as proxy,
        gateway(ris_addr=f"127.0.0.1:{proxy.port}", ris_timeout_s=1.0) as gw,
    ):
        await gw.add_order("PLC1")
        status, listed = await gw.slots()
        assert status == 200
        proxy.stall()
        status, body = await gw.slots(date="2026-12-01")
        assert (status, body["error"]["code"]) == (504, "ris_timeout")
        status, body = await gw.book(**booking_for("PLC1", listed["slots"][0]))
        assert status == 504
        proxy.resume()
        # The booking stayed pending; the same request again re-sends the same control id and the
        # RIS (which did book it) answers with its original reply: one booking.
        status, body = await gw.book(**booking_for("PLC1", listed["slots"][0]))
        assert status == 201, body
        frames = sim.frames_of("SRM^S01")
        assert len(frames) == 2 and frames[0] == frames[1]
        assert len(sim.bookings) == 1 and sim.duplicates == 1


async def test_ris_error_answers_are_502(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", location_cache_s=0) as gw:
        sim.set_faults(nak="AR")
        status, body = await gw.locations()
        assert (status, body["error"]["code"]) == (502, "ris_error")
        sim.set_faults(nak="", garbage=True)
        status, body = await gw.locations()
        assert (status, body["error"]["code"]) == (502, "ris_error")
        sim.clear_faults()
        assert (await gw.locations())[0] == 200


async def test_late_reply_for_another_request_is_discarded_and_counted(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with gateway(
        ris_addr=f"127.0.0.1:{sim.port}", location_cache_s=0, ris_timeout_s=1.0
    ) as gw:
        sim.set_faults(wrong_id=True)
        status, body = await gw.locations()
        # Only a reply to another control id came: discarded, and reported as a RIS error.
        assert (status, body["error"]["code"]) == (502, "ris_error")
        sim.clear_faults()
        status, body = await gw.locations()
        assert status == 200 and body["locations"]
        assert gw.daemon.scheduling.reachable
        _, metrics = await gw.call("GET", "/metrics", key=None)
        assert 'radsched_mllp_events_total{event="foreign_reply",peer="ris"} 1.0' in metrics


async def test_late_reply_after_timeout_never_answers_a_later_request(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with (
        FaultProxy(sim.host, sim.port) as proxy,
        gateway(ris_addr=f"127.0.0.1:{proxy.port}", location_cache_s=0, ris_timeout_s=1.0) as gw,
    ):
        proxy.set_delay(2.5)
        assert (await gw.locations("CT"))[0] == 504
        proxy.set_delay(0)
        # The CT answer arrives late; the MR request must get the MR answer, not the CT one.
        status, body = await gw.locations("MR")
        assert status == 200
        assert [loc["id"] for loc in body["locations"]] == ["NRTH", "WEST"]


async def test_cancelled_order_is_404_and_a_booked_order_cannot_take_a_second_slot(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        await gw.add_order("PLC1")
        await gw.add_order("PLC2", mrn="MRN00002")
        _, listed = await gw.slots()
        first, second = listed["slots"][:2]
        assert (await gw.book(**booking_for("PLC1", first)))[0] == 201
        status, body = await gw.book(**booking_for("PLC1", second))
        assert (status, body["error"]["code"]) == (409, "slot_unavailable")
        assert "already booked" in body["error"]["message"]
        async with gw.daemon.db.transaction("test") as conn:
            await gw.daemon.orders.set_state(
                conn, gw.daemon.orders.key("PLC2"), "cancelled", now=sim.calendar.clock()
            )
        status, body = await gw.book(**booking_for("PLC2", second, mrn="MRN00002"))
        assert (status, body["error"]["code"]) == (404, "unknown_order")
        assert len(sim.frames_of("SRM^S01")) == 1
