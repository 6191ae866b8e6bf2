"""The console in a real browser: Playwright driving Debian's chromium against a real daemon (real
PostgreSQL, MLLP, the simulated RIS, the in-process EMR sink, texts to the Twilio double).

One browser and one daemon for the module; each test opens its own browser context (its own cookies).
Screenshots of every page go to ``build/console-screenshots/`` (git-ignored) as test artefacts.

Chromium missing: the tests fail with the command that installs it. A developer without it may set
``RADSCHED_SKIP_BROWSER_TESTS=1`` to skip them (shown in the summary); CI (``CI`` set) never skips.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from channels import AckCode
from radsched.daemon import running
from radsched.emr.enqueue import seal_body
from radsched.emr.routes import SINK_DESTINATION
from radsched.storage.console import AuditEntry, audit
from radsched.storage.emr_outbox import NewMessage, insert, notify
from tests.conftest import _scratch_database, private_tmp
from tests.console.helpers import PASSWORD, make_user
from tests.smsflow.conftest import Clock, Flow, Patient, settings_for
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually

CHROMIUM = Path(os.environ.get("RADSCHED_CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = (
    f"the browser tests need Debian's chromium at {CHROMIUM}: "
    "install it with `sudo apt-get install -y chromium` (CI's .ci/run does this), "
    "or set RADSCHED_SKIP_BROWSER_TESTS=1 to skip them on a developer machine"
)
# The closed network refuses Chromium's background connections; these flags stop it making them.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"
PAGES = (
    ("overview", "/"),
    ("requests", "/requests"),
    ("modalities", "/modalities"),
    ("outbox", "/outbox"),
    ("messages", "/messages"),
    ("deferred", "/deferred"),
    ("funnel", "/funnel"),
    ("audit", "/audit"),
    ("settings", "/settings"),
    ("users", "/users"),
)
SIU = (
    Path(__file__).resolve().parents[2] / "fixtures" / "siu" / "SIU_S12.ch10-2.5.1.hl7"
).read_bytes()

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("RADSCHED_SKIP_BROWSER_TESTS") == "1" and not os.environ.get("CI"):
        pytest.skip(INSTALL_HINT)
    pytest.fail(INSTALL_HINT, pytrace=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[object]:
    _need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # Playwright gives every launch a fresh temporary --user-data-dir of its own.
        found = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield found
        await found.close()


class WallClock(Clock):
    """The wall clock plus whatever a test advanced it by: `radsched outbox retry`, which the
    console reuses, stamps rows with the wall clock, and the EMR sender compares with this one."""

    def __init__(self) -> None:
        super().__init__(datetime.now(UTC))
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> datetime:
        self.offset += timedelta(**delta)
        return self()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(pg_admin_dsn: str, pg_template: str) -> AsyncIterator[Flow]:
    data_dir = private_tmp("radsched-browser-")
    clock = WallClock()
    try:
        async with (
            _scratch_database(pg_admin_dsn, "b_", pg_template) as dsn,
            TwilioDouble() as twilio,
        ):
            settings = settings_for(dsn, data_dir, twilio, admin_listen="127.0.0.1:0")
            async with running(settings, clock=clock) as daemon:
                flow = Flow(daemon, clock, twilio)
                for name, role in (("olga", "operator"), ("vera", "viewer"), ("ada", "admin")):
                    await make_user(daemon.db, name, role, clock=clock)
                yield flow
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def console_url(flow: Flow, path: str = "/") -> str:
    addr = flow.daemon.listening["admin"]
    return f"http://{addr.host}:{addr.port}{path}"


async def new_page(browser: object, flow: Flow, name: str | None = None):  # type: ignore[no-untyped-def]
    context = await browser.new_context(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page = await context.new_page()
    if name is not None:
        await page.goto(console_url(flow, "/login"))
        await page.get_by_label("User name").fill(name)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(console_url(flow, "/"))
    return page


async def submit_form(page, action: str, fields: dict[str, str]):  # type: ignore[no-untyped-def]
    """Build and submit a form in the page (no fetch: the console's CSP allows no connections)."""
    async with page.expect_navigation() as nav:
        await page.evaluate(
            """([action, fields]) => {
                const form = document.createElement('form');
                form.method = 'post'; form.action = action;
                for (const [name, value] of Object.entries(fields)) {
                    const input = document.createElement('input');
                    input.name = name; input.value = value; form.appendChild(input);
                }
                document.body.appendChild(form); form.submit();
            }""",
            [action, fields],
        )
    return await nav.value


async def test_log_in_and_fail_to_log_in(browser: object, world: Flow) -> None:
    page = await new_page(browser, world)
    await page.goto(console_url(world, "/"))
    assert page.url.endswith("/login")
    await page.get_by_label("User name").fill("vera")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    assert "Wrong user name or password." in await page.get_by_role("alert").inner_text()
    await page.get_by_label("User name").fill("vera")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(console_url(world, "/"))
    assert await page.get_by_role("heading", name="Overview").is_visible()
    await page.context.close()


async def test_operator_toggles_ct_and_the_next_order_gets_the_consent_text(
    browser: object, world: Flow
) -> None:
    viewer = await new_page(browser, world, "vera")
    await viewer.goto(console_url(world, "/modalities"))
    assert await viewer.get_by_role("button", name="Enable CT").count() == 0  # no switch shown
    # A viewer who builds the form by hand anyway is refused by the server.
    token = await viewer.locator("input[name=csrf]").first.input_value()
    refused = await submit_form(
        viewer, "/modalities/CT", {"csrf": token, "enabled": "1", "note": "forged"}
    )
    assert refused.status == 403 and "operator role" in await viewer.content()
    await viewer.context.close()

    page = await new_page(browser, world, "olga")
    await page.goto(console_url(world, "/modalities"))
    await page.get_by_label("Note for CT").fill("CT go-live, ticket 4711")
    await page.get_by_role("button", name="Enable CT").click()
    row = page.locator("#m-CT")
    assert "enabled" in await row.inner_text() and "by olga" in await row.inner_text()
    await page.context.close()

    patient = Patient()
    before = len(world.twilio.accepted)
    ack = await world.order("PL" + secrets.token_hex(4).upper(), patient, modality="CT")
    assert ack.code is AckCode.AA
    texts = await world.texts(before + 1)
    assert texts[-1].to == patient.e164 and "Reply YES" in texts[-1].body


async def test_retry_a_dead_lettered_siu_reaches_the_emr_sink(browser: object, world: Flow) -> None:
    daemon = world.daemon
    control = "DEAD" + secrets.token_hex(4).upper()
    payload = SIU.replace(b"|Q000004|", f"|{control}|".encode())
    async with daemon.db.transaction("test.dead") as conn:
        row_id = await insert(
            conn,
            NewMessage(
                destination=SINK_DESTINATION,
                control_id=control,
                message_type="SIU^S12",
                payload=seal_body(daemon.phi, SINK_DESTINATION, control, payload),
                facility="HOSP",
                origin="booking",
                appointment_id="SMS-APT-0001",
                correlation_id="browser",
            ),
            now=world.clock(),
            dead_reason="AE from EMR (rehearsal)",
        )
        await notify(conn, [SINK_DESTINATION])
    page = await new_page(browser, world, "olga")
    await page.goto(console_url(world, "/outbox"))
    await page.get_by_role("button", name=f"Retry {row_id}").click()
    await page.get_by_role("button", name=f"Yes, retry row {row_id}").click()
    assert "queued again" in await page.get_by_role("status").inner_text()
    sink = daemon.emr.sink if daemon.emr else None
    assert sink is not None

    async def arrived() -> bool:
        return any(r.control_id == control for r in sink.received)

    await eventually(arrived, what="the retried SIU at the EMR sink")
    await page.context.close()


async def test_forged_post_without_csrf_is_refused(browser: object, world: Flow) -> None:
    page = await new_page(browser, world, "olga")
    await page.goto(console_url(world, "/modalities"))
    refused = await submit_form(page, "/modalities/MR", {"enabled": "1", "note": "no token"})
    assert refused.status == 403 and "Form refused" in await page.content()
    # A page on another origin posting a form: the browser says cross-site, the server refuses.
    other = await page.context.new_page()
    await other.set_content(
        f'<form method="post" action="{console_url(world, "/modalities/MR")}">'
        '<input name="enabled" value="1"><input name="note" value="x">'
        '<button id="go">go</button></form>'
    )
    async with other.expect_navigation():
        await other.click("#go")
    assert "Form refused" in await other.content() or "/login" in other.url
    async with world.daemon.db.transaction("test") as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM scheduling_config WHERE modality = 'MR'") == 0
        )
    await page.context.close()


async def test_operator_approves_a_patients_cancel_request(browser: object, world: Flow) -> None:
    from tests.smsflow.test_conversation import book_by_text, converse

    patient = Patient()
    await book_by_text(world, patient)
    assert "scheduling team" in await converse(world, patient, "3")
    [request] = await world.fetch(
        "SELECT id, appointment_id FROM staff_requests WHERE state = 'pending' ORDER BY id DESC"
        " LIMIT 1"
    )
    rid, appointment_id = request["id"], request["appointment_id"]

    viewer = await new_page(browser, world, "vera")
    await viewer.goto(console_url(world, "/requests"))
    assert appointment_id in await viewer.locator(f"#r-{rid}").inner_text()
    assert await viewer.get_by_role("button", name=f"Deny {rid}").count() == 0
    await viewer.context.close()

    page = await new_page(browser, world, "olga")
    await page.get_by_role("link", name="Requests").click()
    await page.get_by_label(f"Note for request {rid}").fill("asked by text, slot released")
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "requests-pending.png"), full_page=True)
    sent = len(world.twilio.accepted)
    await page.get_by_role("button", name=f"Approve {rid}: cancel {appointment_id}").click()
    done = await page.get_by_role("status").inner_text()
    assert f"Request {rid} approved" in done and "patient was texted" in done
    decided = await page.locator(f"#d-{rid}").inner_text()
    assert "approved" in decided and "olga" in decided and "slot released" in decided
    texts = await world.texts(sent + 1)
    assert texts[-1].to == patient.e164 and "no longer booked" in texts[-1].body
    await page.screenshot(path=str(SHOTS / "requests-decided.png"), full_page=True)
    await page.context.close()


async def test_idle_session_expires(browser: object, world: Flow) -> None:
    page = await new_page(browser, world, "vera")
    world.clock.advance(minutes=31)
    await page.goto(console_url(world, "/messages"))
    assert page.url.endswith("/login?expired=1")
    assert "30 minutes" in await page.get_by_role("status").inner_text()
    await page.context.close()


async def test_full_conversation_then_every_page_screenshot_and_phi_scan(
    browser: object, world: Flow
) -> None:
    from tests.smsflow.test_conversation import converse

    patient = Patient()
    before = len(world.twilio.accepted)
    await world.order("PL" + secrets.token_hex(4).upper(), patient, modality="CT")
    assert "YES" in (await world.texts(before + 1))[-1].body
    assert "1 " in await converse(world, patient, "YES")
    assert "2 " in await converse(world, patient, "1")
    assert "Code" in await converse(world, patient, "2")
    async with world.daemon.db.transaction("test.audit") as conn:
        await audit(conn, AuditEntry("ada", "rehearsal", note="screenshots"), now=world.clock())
    phi = [patient.mrn, patient.family, patient.given, patient.e164, patient.e164[2:], patient.dob]
    phi += [f"{patient.exchange}-{patient.line}", f"{patient.exchange}{patient.line}"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = await new_page(browser, world, "ada")
    for name, path in PAGES:
        await page.goto(console_url(world, path))
        html = await page.content()
        for value in phi:
            assert value not in html, (path, "PHI on the page")
        assert "<h1>" in html
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    await page.goto(console_url(world, "/funnel"))
    assert "CT" in await page.locator("table").inner_text()
    # Tablet width: the navigation wraps, nothing needs a mouse.
    await page.set_viewport_size({"width": 820, "height": 1180})
    await page.goto(console_url(world, "/"))
    await page.screenshot(path=str(SHOTS / "overview-tablet.png"), full_page=True)
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.context.close()
