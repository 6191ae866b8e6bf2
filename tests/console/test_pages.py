"""Every page against seeded metadata: what it shows, what it never shows (PHI), who may act."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

from aiohttp.test_utils import TestClient

from channels import OrderRef, PatientName
from radsched.emr.enqueue import seal_body
from radsched.privacy import PhiBox, parse_key
from radsched.storage import emr_outbox as outbox_store
from radsched.storage.db import Database
from radsched.storage.orders import OrderStore
from tests.console.helpers import PHI_KEY, PHONE_KEY, Clock, login, make_user, post_form

Client = TestClient[object, object]

# What the seeded order and SIU carry; none of it may appear on a page (the placer order number only
# on the deferred-orders page, for operators).
PHI = ("ZEBRAFAMILY", "QUINCYGIVEN", "MRN777001", "+15550104477", "5550104477")
PLACER = "PLC900001"
PAGES = (
    "/",
    "/requests",
    "/modalities",
    "/outbox",
    "/messages",
    "/messages?direction=out",
    "/funnel",
    "/audit",
    "/settings",
    "/users",
    "/deferred",
    "/password",
)


async def seed(db: Database, clock: Clock) -> dict[str, int]:
    phi = PhiBox.from_secret(PHI_KEY)
    orders = OrderStore(parse_key(PHONE_KEY), phi)
    order = OrderRef(
        order_id=PLACER,
        mrn="MRN777001",
        placer_order_id=PLACER,
        procedure_code="74177",
        procedure_text="CT ABD",
        modality="CT",
        name=PatientName("ZEBRAFAMILY", "QUINCYGIVEN"),
    )
    hl7 = b"MSH|^~\\&|RADSCHED|RADSCHED|EMR|HOSP|20261203||SIU^S12|CTL0001|P|2.5.1\rPID|||MRN777001||ZEBRAFAMILY^QUINCYGIVEN\r"
    now = clock()
    async with db.transaction("test.seed") as conn:
        await orders.insert(
            conn,
            order,
            source="mllp",
            facility="HOSP",
            phone="+15550104477",
            correlation_id="c1",
            received_at=now - timedelta(days=2),
            state="deferred",
            deferred_reason="modality disabled",
        )
        await conn.execute(
            """
            INSERT INTO inbound_messages (sender, control_id, message_type, received_at, ack_code,
                                          ack_payload, correlation_id)
            VALUES ('RIS^HOSP', 'IN0001', 'ORM^O01', $1, 'AA', '\\x00', 'c1'),
                   ('RIS^HOSP', 'IN0002', 'ORM^O01', $1, 'AE', '\\x00', 'c2')
            """,
            now - timedelta(hours=1),
        )
        ids = {}
        for name, dead in (("pending", None), ("dead", "AE: unknown patient")):
            control = f"CTL{name}"
            ids[name] = await outbox_store.insert(
                conn,
                outbox_store.NewMessage(
                    destination="127.0.0.1:9",
                    control_id=control,
                    message_type="SIU^S12",
                    payload=seal_body(phi, "127.0.0.1:9", control, hl7),
                    facility="HOSP",
                    origin="booking",
                    appointment_id=f"APT-{name}",
                    correlation_id="c1",
                ),
                now=now - timedelta(minutes=10),
                dead_reason=dead,
            )
        session = uuid.uuid4()
        for offset, kind in enumerate(("order_received", "consent_granted", "booked")):
            await conn.execute(
                """
                INSERT INTO sms_audit_log (occurred_at, phone_hash, message_type, direction,
                                           session_id, modality)
                VALUES ($1, $2, $3, 'system', $4, 'CT')
                """,
                now - timedelta(hours=3) + timedelta(minutes=offset * 5),
                "f" * 64,
                kind,
                session,
            )
    return ids


async def test_every_page_renders_without_phi(client: Client, db: Database, clock: Clock) -> None:
    await seed(db, clock)
    await make_user(db, "root", "admin", clock=clock)
    await login(client, "root")
    for path in PAGES:
        resp = await client.get(path)
        assert resp.status == 200, path
        html = await resp.text()
        for secret in PHI:
            assert secret not in html, (path, secret)
        if path != "/deferred":
            assert PLACER not in html, path
        assert "<main" in html and 'lang="en"' in html
        assert PHI_KEY not in html and PHONE_KEY not in html


async def test_overview_shows_queues_and_checks(client: Client, db: Database, clock: Clock) -> None:
    await seed(db, clock)
    await make_user(db, "v", "viewer", clock=clock)
    await login(client, "v")
    html = await (await client.get("/")).text()
    assert "Ready: every dependency answers." in html
    assert "127.0.0.1:9" in html and "10 min" in html and "AE: unknown patient" in html


async def test_deferred_orders_show_placer_number_to_operators_and_are_audited(
    client: Client, db: Database, clock: Clock
) -> None:
    await seed(db, clock)
    await make_user(db, "v", "viewer", clock=clock)
    await make_user(db, "op", "operator", clock=clock)
    await login(client, "v")
    assert (await client.get("/deferred")).status == 403
    await post_form(client, "/logout", {})
    await login(client, "op")
    html = await (await client.get("/deferred")).text()
    assert PLACER in html and "modality disabled" in html and "overdue" in html
    async with db.transaction("test") as conn:
        views = await conn.fetchval(
            "SELECT count(*) FROM console_audit WHERE actor = 'op' AND action = 'view_deferred'"
        )
    assert views == 1


async def test_message_log_search_and_no_bodies(client: Client, db: Database, clock: Clock) -> None:
    await seed(db, clock)
    await make_user(db, "v", "viewer", clock=clock)
    await login(client, "v")
    both = await (await client.get("/messages")).text()
    assert "IN0001" in both and "IN0002" in both
    only = await (await client.get("/messages?control_id=IN0002")).text()
    assert "IN0002" in only and "IN0001" not in only
    by_code = await (await client.get("/messages?code=AA")).text()
    assert "IN0001" in by_code and "IN0002" not in by_code
    day = clock().strftime("%Y-%m-%d")
    dated = await (await client.get(f"/messages?date={day}&type=orm^o01")).text()
    assert "IN0001" in dated
    out = await (await client.get("/messages?direction=out&code=dead")).text()
    assert "CTLdead" in out and "CTLpending" not in out


async def test_outbox_retry_needs_confirmation_and_operator(
    client: Client, db: Database, clock: Clock
) -> None:
    ids = await seed(db, clock)
    await make_user(db, "op", "operator", clock=clock)
    await login(client, "op")
    html = await (await client.get("/outbox")).text()
    assert f"Retry {ids['dead']}" in html and "APT-dead" in html
    ask = await post_form(client, f"/outbox/{ids['dead']}/retry", {}, page="/outbox")
    assert "same MSH-10" in await ask.text()
    async with db.transaction("test") as conn:
        assert (await outbox_store.get_row(conn, ids["dead"]))["state"] == "dead"
    done = await post_form(
        client, f"/outbox/{ids['dead']}/retry", {"confirm": "yes"}, page="/outbox"
    )
    assert "queued again" in await done.text()
    async with db.transaction("test") as conn:
        assert (await outbox_store.get_row(conn, ids["dead"]))["state"] == "pending"
        audit = await conn.fetchrow("SELECT * FROM console_audit WHERE action = 'outbox_retry'")
    assert audit["target"] == f"hl7_outbox:{ids['dead']}" and audit["old_value"].startswith("dead")
    dropped = await post_form(
        client, f"/outbox/{ids['pending']}/drop", {"confirm": "yes"}, page="/outbox"
    )
    assert dropped.status == 200
    async with db.transaction("test") as conn:
        assert (await outbox_store.get_row(conn, ids["pending"]))["state"] == "dead"


async def test_funnel_chart_and_csv(client: Client, db: Database, clock: Clock) -> None:
    await seed(db, clock)
    await make_user(db, "v", "viewer", clock=clock)
    await login(client, "v")
    html = await (await client.get("/funnel")).text()
    assert "<svg" in html and 'role="img"' in html and "10m00s" in html
    week = await client.get("/funnel?bucket=week&modality=ct")
    assert week.status == 200
    resp = await client.get("/funnel.csv?days=7")
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    ct = [r for r in rows if r["modality"] == "CT"]
    assert sum(int(r["orders"]) for r in ct) == 1
    assert sum(int(r["booked"]) for r in ct) == 1 and sum(int(r["consents"]) for r in ct) == 1
    assert any("modality disabled=1" in r["deferred_by_reason"] for r in ct)


async def test_settings_mask_secrets(client: Client, db: Database, clock: Clock) -> None:
    await make_user(db, "v", "viewer", clock=clock)
    await login(client, "v")
    html = await (await client.get("/settings")).text()
    assert "RADSCHED_PHI_KEY" in html and "(set)" in html and "RADSCHED_ADMIN_LISTEN" in html
    assert "postgresql://" not in html


async def test_requests_without_a_desk_are_listed_and_not_decided(
    client: Client, db: Database, clock: Clock
) -> None:
    """A daemon without the sms and gateway roles has no StaffDesk: its console lists only."""
    from radsched.storage import staff_requests

    async with db.transaction("test.request") as conn:
        rid = await staff_requests.next_id(conn)
        await staff_requests.create(
            conn,
            rid,
            appointment_id=None,
            kind="unclear",
            phone_hash="f" * 64,
            phi=b"sealed",
            modality=None,
            now=clock() - timedelta(hours=5),
            correlation_id="c1",
        )
    await make_user(db, "op", "operator", clock=clock)
    await login(client, "op")
    html = await (await client.get("/requests")).text()
    assert f'id="r-{rid}"' in html and "overdue" in html and f"Deny {rid}" not in html
    assert "1 overdue" in await (await client.get("/")).text()
    refused = await post_form(client, f"/requests/{rid}/deny", {}, page="/requests")
    assert refused.status == 503 and "cannot decide requests" in await refused.text()
    async with db.transaction("test") as conn:
        assert await conn.fetchval("SELECT state FROM staff_requests") == "pending"
