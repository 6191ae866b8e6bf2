"""Start the appointment lifecycle: the record, its REST routes, and its ties to the other components.

Started after the EMR component (the composition root calls :func:`start`), because it ties into three
things the earlier components own:

* the scheduling service's booking hooks: the record is written after the EMR hook queued the S12, in the
  same transaction, so it knows the S12's destinations;
* the EMR outbox: change notifications (S13/S14/S15/S17) go to those destinations behind the S12;
* the inbound router: an SIU from the RIS is relayed as before and then updates the record in the same
  transaction; an ORM CA/OC/DC for an order we booked cancels its appointment (and queues the S15).

TOML ``[appointments]``: ``siu_match`` (which SCH id finds the record) and ``confirm_siu`` (a patient's "1"
queues an SIU^S14 to the EMRs; the SMS side calls :meth:`Lifecycle.confirmed` through a late-bound reference
the composition root gives it).

The resolver of pending changes is started by the root once everything is up (``run_resolver``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, tzinfo

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from channels import Dialect, Message, ParseError, Party, parse_siu
from radsched.emr.changes import ChangeNotifications
from radsched.emr.routes import Routes
from radsched.errors import ConfigError
from radsched.inbound.router import AckDecision, InboundContext, InboundHandler, InboundRouter
from radsched.intake.hl7 import ORDER_KEY
from radsched.privacy import PhiBox
from radsched.rest import openapi
from radsched.rest.errors import error_response
from radsched.rest.lifecycle import LifecycleApi, openapi_fragment
from radsched.scheduling.lifecycle import Lifecycle, LifecycleMetrics, PatientNews
from radsched.scheduling.service import BookedAppointment, SchedulingService
from radsched.settings import toml_sections
from radsched.storage import appointments as records
from radsched.storage.db import Database
from radsched.storage.orders import OrderStore
from radsched.storage.pg import Connection
from radsched.tasks import spawn

log = logging.getLogger("radsched.lifecycle")

#: SIU from the RIS the record follows (S12: an appointment booked at the RIS; S26: a no-show).
SIU_CHANGES = ("SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S17", "SIU^S26")
GAUGE_INTERVAL_S = 15.0
APPOINTMENT_KEYS = frozenset({"siu_match", "confirm_siu"})
"""The keys of ``[appointments]`` in RADSCHED_CONFIG."""


def siu_match(table: dict[str, object]) -> tuple[str, ...]:
    """``[appointments] siu_match`` of RADSCHED_CONFIG: which SCH id finds our record for an SIU from the
    RIS, in order. ``["filler", "placer"]`` (default): SCH-2 (the RIS's id, which every RIS sends), then
    SCH-1 (ours, which RISes that echo the placer id keep); ``["placer"]`` for a RIS whose SCH-2 is not
    stable; ``["filler"]`` for one that puts its own ids in SCH-1 too."""
    unknown = set(table) - APPOINTMENT_KEYS
    if unknown:
        raise ConfigError(f"RADSCHED_CONFIG [appointments]: unknown key {sorted(unknown)[0]!r}")
    value = table.get("siu_match", ["filler", "placer"])
    if (
        not isinstance(value, list)
        or not value
        or any(v not in ("filler", "placer") for v in value)
        or len(set(value)) != len(value)
    ):
        raise ConfigError(
            'RADSCHED_CONFIG [appointments] siu_match: a list of "filler" and/or "placer"'
        )
    return tuple(str(v) for v in value)


def confirm_siu(table: dict[str, object]) -> bool:
    """``[appointments] confirm_siu`` of RADSCHED_CONFIG (default false): a patient's reply "1" also
    queues an SIU^S14 with the confirmation (SCH-6 ``CONFIRMED``) to the EMRs that got the S12."""
    value = table.get("confirm_siu", False)
    if not isinstance(value, bool):
        raise ConfigError("RADSCHED_CONFIG [appointments] confirm_siu: true or false")
    return value


def authoriser(api_keys: tuple[str, ...]) -> Callable[[web.Request], web.Response | None]:
    """The REST facade's X-API-Key check (constant time against every key)."""
    keys = tuple(k.encode() for k in api_keys if k)

    def check(request: web.Request) -> web.Response | None:
        supplied = request.headers.get("X-API-Key", "")
        if not supplied:
            return error_response(401, "unauthorized", "missing X-API-Key header")
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), key)
        return None if matched else error_response(401, "unauthorized", "unknown API key")

    return check


def lifecycle_metrics(registry: CollectorRegistry | None) -> LifecycleMetrics:
    changes = Counter(
        "radsched_appointment_changes",
        "Appointment cancels, reschedules and no-shows by origin and outcome (ris_* = told by the RIS).",
        ["kind", "origin", "outcome"],
        registry=registry,
    )
    return LifecycleMetrics(
        changes=lambda kind, origin, outcome: changes.labels(kind, origin, outcome).inc()
    )


def status_gauge(registry: CollectorRegistry | None) -> Gauge:
    return Gauge(
        "radsched_appointments",
        "Appointments in the record by status and origin (rest, sms, ris).",
        ["status", "origin"],
        registry=registry,
    )


async def refresh_status_gauge(gauge: Gauge, db: Database) -> None:
    async with db.transaction("appointments.counts") as conn:
        for status, origin, count in await records.counts_by_status(conn):
            gauge.labels(status, origin).set(count)


def _siu_follower(
    lifecycle: Lifecycle, tz: tzinfo
) -> Callable[[InboundHandler | None], InboundHandler]:
    def wrap(relay: InboundHandler | None) -> InboundHandler:
        async def handle(conn: Connection, msg: Message, ctx: InboundContext) -> AckDecision:
            outcome = await relay(conn, msg, ctx) if relay is not None else AckDecision()
            try:
                siu = parse_siu(msg, tz=tz)
            except ParseError:
                return outcome  # the relay handler answered it already
            result = await lifecycle.apply_siu(conn, siu)
            log.info("SIU from the RIS", extra={"trigger": siu.trigger, "record": result})
            return outcome

        return handle

    return wrap


def _order_follower(
    lifecycle: Lifecycle, dialect: Dialect, orders: OrderStore
) -> Callable[[InboundHandler | None], InboundHandler]:
    def wrap(intake: InboundHandler | None) -> InboundHandler:
        async def handle(conn: Connection, msg: Message, ctx: InboundContext) -> AckDecision:
            outcome = await intake(conn, msg, ctx) if intake is not None else AckDecision()
            try:
                # Parsed once for both: the intake (inside) asked first under the same key.
                order = ctx.once(ORDER_KEY, lambda: dialect.parse_order(msg))
            except ParseError:
                return outcome
            await lifecycle.apply_order(conn, order, orders.key(order.order_id))
            return outcome

        return handle

    return wrap


async def start(
    stack: AsyncExitStack,
    *,
    db: Database,
    orders: OrderStore,
    phi: PhiBox,
    scheduling: SchedulingService,
    routes: Routes,
    inbound: InboundRouter,
    app: web.Application,
    api_keys: tuple[str, ...],
    registry: CollectorRegistry | None,
    me: Party,
    tz: tzinfo,
    clock: Callable[[], datetime],
    match: Sequence[str] | None = None,
    news: PatientNews | None = None,
) -> Lifecycle:
    table = dict(toml_sections().get("appointments", {}))
    if match is None:
        match = siu_match(table)
    lifecycle = Lifecycle(
        db=db,
        orders=orders,
        ris=scheduling.ris,
        dialect=scheduling.dialect,
        control_ids=scheduling.control_ids,
        phi=phi,
        slots=scheduling,
        tz=tz,
        clock=clock,
        notifier=ChangeNotifications(routes, phi, me=me, tz=tz, clock=clock),
        news=news,
        match=match,
        metrics=lifecycle_metrics(registry),
        confirm_siu=confirm_siu(table),
    )
    stack.push_async_callback(lifecycle.aclose)

    async def record(conn: Connection, booked: BookedAppointment) -> None:
        origin = await records.booking_origin(conn, booked.booking_id)
        await lifecycle.record_booked(conn, booked, origin=origin[0], order_key=origin[1])

    scheduling.add_booking_hook(record)
    # Only on top of a handler this daemon runs (the emr role's relay, the sms role's intake): with
    # nothing beneath, the follower would ACK a message that no one stored or relayed (ROLES, issue 17).
    handled = set(inbound.message_types)
    for message_type in SIU_CHANGES:
        if message_type in handled:
            inbound.wrap(message_type, _siu_follower(lifecycle, tz))
    if "ORM^O01" in handled:
        inbound.wrap("ORM^O01", _order_follower(lifecycle, scheduling.dialect, orders))

    api = LifecycleApi(lifecycle, authoriser(api_keys), tz)
    app.router.add_routes(api.routes())
    openapi.add_paths(app, openapi_fragment())

    gauge = status_gauge(registry)

    async def gauges() -> None:
        while True:
            try:
                await refresh_status_gauge(gauge, db)
            except Exception:  # a background loop: log, keep going
                log.exception("appointment gauges failed")
            await asyncio.sleep(GAUGE_INTERVAL_S)

    task = spawn(gauges(), name="appointment-gauges")
    stack.callback(task.cancel)
    return lifecycle
