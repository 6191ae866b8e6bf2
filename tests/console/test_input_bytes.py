"""Query and form values the database cannot take (issue 11 item 6, the console's share): a NUL
(PostgreSQL text cannot hold it) in any field, and a day so late that the next one overflows. Each
used to be a 500 with a traceback; now a 400 page that names the field (other control characters in
a query too, as in the API), and a day out of range is simply no filter.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from radsched.storage.db import Database
from tests.console.helpers import Clock, login, make_user, post_form

Client = TestClient[object, object]


@pytest.fixture
async def operator(client: Client, db: Database, clock: Clock) -> Client:
    await make_user(db, "op", "operator", clock=clock)
    await login(client, "op")
    return client


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("control_id=A%00B", "control_id"),
        ("type=%00", "type"),
        ("direction=out&code=%1b", "code"),
    ],
)
async def test_a_bad_character_in_a_filter_is_a_400_naming_it(
    operator: Client, query: str, field: str
) -> None:
    response = await operator.get(f"/messages?{query}")
    assert response.status == 400
    assert field in await response.text()


async def test_a_day_out_of_range_is_no_filter(operator: Client) -> None:
    response = await operator.get("/messages?date=9999-12-31")
    assert response.status == 200


async def test_a_nul_in_a_form_is_a_400_naming_the_field(operator: Client) -> None:
    response = await post_form(
        operator, "/modalities/CT", {"enabled": "1", "note": "scanner\x00down"}, page="/modalities"
    )
    assert response.status == 400
    assert "note" in await response.text()
    # A note over several lines is a note: line breaks and tabs stay allowed in forms.
    response = await post_form(
        operator,
        "/modalities/CT",
        {"enabled": "1", "note": "scanner 2\r\n\tdown"},
        page="/modalities",
    )
    assert response.status == 303
