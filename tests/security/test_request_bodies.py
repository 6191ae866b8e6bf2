"""Request bodies and queries that used to reach a 500 (issue 11 item 6): JSON nested past any
sense, NUL and other control characters in a field (PostgreSQL text cannot hold NUL), a lone
surrogate escape (not encodable as UTF-8), and a first day so late that the window overflows.

Each is a 400 in the usual error shape, naming the field and never echoing the value, through the
real daemon's HTTP port.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.security.conftest import API_KEY, ORDER_TOKEN, Secured, SecuredFactory

BOOK = "/api/ris/book-appointment"
CANCEL = "/api/ris/cancel-appointment"
RESCHEDULE = "/api/ris/reschedule-appointment"
ORDERS = "/api/orders"
AUTH = {
    BOOK: {"X-API-Key": API_KEY},
    CANCEL: {"X-API-Key": API_KEY},
    RESCHEDULE: {"X-API-Key": API_KEY},
    ORDERS: {"Authorization": f"Bearer {ORDER_TOKEN}"},
}
VALID = {
    BOOK: {"order_id": "O1", "mrn": "M1", "modality": "CR", "location": "L1", "slot_id": "S1"},
    CANCEL: {"appointment_id": "A1", "reason": "patient asked"},
    RESCHEDULE: {"appointment_id": "A1", "slot_id": "S1"},
    ORDERS: {"order_id": "O1", "mrn": "M1", "phone": "+16175550100", "modality": "CR"},
}
FIELD = {BOOK: "mrn", CANCEL: "reason", RESCHEDULE: "slot_id", ORDERS: "mrn"}


@pytest.fixture
async def live(secured: SecuredFactory) -> AsyncIterator[Secured]:
    async with secured(rate_limit_api_per_s=0, rate_limit_orders_per_s=0) as s:
        yield s


async def post_raw(s: Secured, path: str, body: str) -> tuple[int, Any]:
    headers = {**AUTH[path], "Content-Type": "application/json"}
    status, _, payload = await s.post(path, data=body.encode(), headers=headers)
    return status, payload


def assert_names(status: int, payload: Any, field: str, needle: str | None = None) -> None:
    assert status == 400, payload
    assert payload["error"]["code"] == "invalid_request", payload
    assert payload["error"]["message"].startswith(f"{field}: "), payload
    if needle is not None:
        assert needle not in payload["error"]["message"]


@pytest.mark.parametrize("path", list(VALID))
async def test_json_nested_deeply_is_a_400_naming_the_field(live: Secured, path: str) -> None:
    field = FIELD[path]
    # Deep enough to exhaust the parser's recursion, small enough for the orders' body limit.
    deep = "[" * 5000 + "]" * 5000
    body = json.dumps({**VALID[path], field: "x"}).replace('"x"', deep)
    status, payload = await post_raw(live, path, body)
    assert_names(status, payload, field)
    status, payload = await post_raw(live, path, deep)
    assert_names(status, payload, "body")


@pytest.mark.parametrize("path", list(VALID))
@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\ud800"])
async def test_control_characters_and_lone_surrogates_are_a_400_naming_the_field(
    live: Secured, path: str, char: str
) -> None:
    field = FIELD[path]
    body = json.dumps({**VALID[path], field: f"M12{char}34"})  # ASCII-escaped: \u0000, \ud800
    status, payload = await post_raw(live, path, body)
    assert_names(status, payload, field, needle="M12")


@pytest.mark.parametrize("field", ["order_id", "facility", "procedure", "language", "phone"])
async def test_nul_in_any_order_field_is_a_400_naming_it(live: Secured, field: str) -> None:
    status, payload = await live.order({**VALID[ORDERS], field: "A\x00B"})
    assert_names(status, payload, field)


async def slots(s: Secured, day: str, days: str) -> tuple[int, Any]:
    _, _, found = await s.get("/api/ris/locations", modality="CR")
    location = found["locations"][0]["id"]
    status, _, payload = await s.get(
        "/api/ris/available-slots", location=location, modality="CR", date=day, days=days
    )
    return status, payload


@pytest.mark.parametrize(
    ("day", "days"), [("9999-12-31", "1"), ("9999-12-10", "31"), ("0001-01-01", "1")]
)
async def test_a_first_day_out_of_range_is_a_400_naming_date(
    live: Secured, day: str, days: str
) -> None:
    status, payload = await slots(live, day, days)
    assert_names(status, payload, "date")


@pytest.mark.parametrize(("day", "days"), [("1900-01-01", "1"), ("9998-12-31", "31")])
async def test_the_first_and_last_days_allowed_are_answered(
    live: Secured, day: str, days: str
) -> None:
    assert await slots(live, day, days) == (200, {"slots": []})


async def test_brackets_inside_strings_are_not_nesting(live: Secured) -> None:
    reason = 'said "' + "[{" * 50 + '" and \\"]]' + "[" * 50  # quotes and escapes in the text
    status, payload = await post_raw(
        live, CANCEL, json.dumps({"appointment_id": "A-unknown", "reason": reason})
    )
    assert (status, payload["error"]["code"]) == (404, "unknown_appointment"), payload
