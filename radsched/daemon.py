"""The composition root: start resources in dependency order, stop them in reverse.

Everything the daemon owns is entered into one ``AsyncExitStack``; leaving the stack (SIGTERM, a
start-up failure) unwinds exactly what was started, newest first. Each component's ``start`` gets
the parts it needs as arguments and returns what later components need; the two edges against the
start order go through radsched/wiring.py. Readiness is announced to systemd only after every
listener is bound; the work that needs every component (the booking resolver, resuming waiting
conversations) starts right before that.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from aiohttp import web

import mllp
from channels import Party
from radsched import emr as emr_component
from radsched import intake, retention
from radsched.beside.components import (
    RoleMetrics,
    engine_secrets,
    open_scheduling_backend,
    open_shadow,
    role_readiness,
)
from radsched.beside.roles import needs
from radsched.console.component import console_deps, console_runner, first_admin
from radsched.datadir import prepare_data_dir
from radsched.errors import ConfigError, StartupError
from radsched.hl7metrics import HL7Metrics
from radsched.inbound.batches import BatchListener
from radsched.inbound.exposure import warn_if_exposed
from radsched.inbound.router import InboundRouter
from radsched.inbound.tls import listener_context
from radsched.logs import RedactingFilter
from radsched.metrics import Metrics
from radsched.privacy import KeyFormatError, PhiBox, parse_key
from radsched.rest import openapi
from radsched.rest import staff_requests as staff_requests_api
from radsched.rest.app import build_app
from radsched.rest.health import Readiness, add_health_routes
from radsched.rest.ratelimit import RateLimiter
from radsched.rest.scheduling import add_routes as add_scheduling_routes
from radsched.scheduling import component as ris_component
from radsched.scheduling import lifecycle_component
from radsched.scheduling.lifecycle import Lifecycle
from radsched.scheduling.rest_backend import RestMetrics
from radsched.scheduling.service import SchedulingService
from radsched.secrets_store import Secrets, resolve_secrets
from radsched.settings import HostPort, Settings
from radsched.sms import reminders as sms_reminders
from radsched.sms.after_booking import StaffDesk
from radsched.sms.engine import SmsEngine
from radsched.sms.news import NewsTexts
from radsched.sms.reminders import Reminders
from radsched.sms.waitlist import Waitlist
from radsched.storage import outbox_health
from radsched.storage.connect import storage
from radsched.storage.db import Database
from radsched.storage.migrate import migrate
from radsched.storage.orders import OrderStore
from radsched.storage.webhook_signatures import WebhookSignatures
from radsched.systemd import Notifier, watchdog_interval, watchdog_loop
from radsched.tasks import spawn
from radsched.twilio import transport as sms_transport
from radsched.twilio.transport import SmsOutbox
from radsched.twilio.webhooks import InboundSink
from radsched.wiring import OutboxBell

log = logging.getLogger("radsched.daemon")


@dataclass(frozen=True)
class Daemon:
    """The running daemon's parts, for tests and the CLI to look at. No component reads or writes it."""

    settings: Settings
    secrets: Secrets
    metrics: Metrics
    db: Database
    dsn: str
    readiness: Readiness
    app: web.Application
    hl7_metrics: HL7Metrics
    inbound: InboundRouter
    me: Party
    tz: ZoneInfo
    clock: Callable[[], datetime]
    hash_key: bytes
    phi: PhiBox
    orders: OrderStore
    # None where this daemon's ROLES do not include the part (issue 17, radsched/beside/roles.py).
    scheduling: SchedulingService | None
    sms_engine: SmsEngine | None
    sms_outbox: SmsOutbox | None
    emr: emr_component.EmrOutbox
    listening: Mapping[str, HostPort]
    lifecycle: Lifecycle | None
    reminders: Reminders | None = None


async def _bind(
    runner: web.AppRunner, addr: HostPort, *, setting: str, reuse_port: bool = False
) -> HostPort:
    site = web.TCPSite(
        runner, addr.host, addr.port, reuse_address=True, reuse_port=reuse_port or None
    )
    try:
        await site.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{setting}: {addr} is already in use") from None
        raise StartupError(f"{setting}: cannot listen on {addr}: {exc.strerror}") from None
    server = site._server  # aiohttp exposes bound sockets only here
    sockets = getattr(server, "sockets", None) or []
    host, port = sockets[0].getsockname()[:2] if sockets else (addr.host, addr.port)
    return HostPort(str(host), int(port))


async def _listen_mllp(
    settings: Settings,
    inbound: InboundRouter,
    hl7_metrics: HL7Metrics,
    *,
    me: Party,
    tz: ZoneInfo,
    clock: Callable[[], datetime],
) -> mllp.Server:
    addr = settings.mllp_addr
    # A batch (FHS/BHS) in one frame is split and each message routed on its own (radsched/inbound/batches.py).
    batches = BatchListener(
        inbound.handle_frame, me, mode=settings.mllp_batch_ack, tz=tz, clock=clock
    )
    ssl = listener_context(settings)
    warn_if_exposed(addr, tls=ssl is not None, allow_list=settings.mllp_allow_list)
    try:
        return await mllp.start_server(
            batches.handle_frame,
            addr.host,
            addr.port,
            ssl=ssl,
            allow_peer=settings.mllp_allow_list,
            max_connections=settings.mllp_max_connections,
            max_connections_per_peer=settings.mllp_max_connections_per_peer,
            max_framing_errors=settings.mllp_max_framing_errors,
            idle_timeout=settings.mllp_idle_timeout_s,
            frame_timeout=settings.mllp_frame_timeout_s,
            max_frame_size=settings.mllp_max_frame_bytes,
            on_framing_error=inbound.on_framing_error,
            observer=hl7_metrics.observer("listener"),
            reuse_port=settings.reuse_port,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"RADSCHED_MLLP_LISTEN: {addr} is already in use") from None
        raise StartupError(
            f"RADSCHED_MLLP_LISTEN: cannot listen on {addr}: {exc.strerror}"
        ) from None


def _utc_now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def running(
    settings: Settings,
    *,
    notifier: Notifier | None = None,
    redactor: RedactingFilter | None = None,
    clock: Callable[[], datetime] = _utc_now,
    sms_engine: Callable[[], InboundSink | None] | None = None,
) -> AsyncIterator[Daemon]:
    """Start the daemon; yield it while it runs; stop everything in reverse order on exit.

    ``sms_engine`` replaces what the SMS webhooks and the outbox sender call back (tests that
    record those calls); the real engine still runs.
    """
    notifier = notifier or Notifier(address="")
    async with AsyncExitStack() as stack:
        settings = settings.model_copy(update={"data_dir": prepare_data_dir(settings.data_dir)})
        secrets = resolve_secrets(settings)
        try:
            hash_key = parse_key(secrets.phone_hash_key, setting="RADSCHED_PHONE_HASH_KEY")
            phi = PhiBox.from_secret(secrets.phi_key, setting="RADSCHED_PHI_KEY")
        except KeyFormatError as exc:
            raise ConfigError(str(exc)) from None
        if redactor is not None:
            dsn_secret = settings.database_url.get_secret_value() if settings.database_url else None
            redactor.set_secrets(
                [
                    *secrets.values(),
                    *engine_secrets(settings),
                    *([dsn_secret] if dsn_secret else []),
                ]
            )
        metrics = Metrics()
        store = await stack.enter_async_context(
            storage(settings, stack, metrics.registry, owner=True)
        )
        db, dsn = store.db, store.dsn
        async with db.pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("database migrated", extra={"versions": ",".join(map(str, applied))})

        readiness = Readiness()

        async def database_ready() -> str | None:
            await db.ping()
            return None

        readiness.add("database", database_ready)
        roles = settings.role_set
        need = needs(roles, backend=settings.scheduling_backend)
        RoleMetrics(metrics.registry, roles)
        # Work queued for a role that no daemon on this database runs any more (after a role change).
        readiness.add("roles", role_readiness(db))

        limiter = RateLimiter.from_settings(settings, secrets, hash_key, metrics.registry)
        app = build_app(metrics.registry, rate_limiter=limiter)
        add_health_routes(app, readiness, metrics, roles=roles)
        hl7_metrics = HL7Metrics(metrics.registry)
        me = Party(settings.sending_app, settings.sending_facility)
        tz = ZoneInfo(settings.timezone)
        inbound = InboundRouter(
            db, me, hl7_metrics, tz=tz, clock=clock, max_field_bytes=settings.mllp_max_field_bytes
        )
        orders = OrderStore(hash_key, phi)
        listening: dict[str, HostPort] = {}
        bell = OutboxBell()

        # --- components, in dependency order ---

        # RIS gateway first: the scheduling service is used by the SMS engine and the EMR outbox.
        scheduling: SchedulingService | None = None
        ris_started_at = clock()
        if need.ris_client:
            ris = await ris_component.start(
                stack,
                settings=settings,
                db=db,
                orders=orders,
                readiness=readiness,
                hl7_metrics=hl7_metrics,
                me=me,
                tz=tz,
                clock=clock,
            )
            if ris.simulated_ris is not None:
                listening["sim-ris"] = ris.simulated_ris
            scheduling, ris_started_at = ris.service, ris.started_at
        rest_metrics = RestMetrics(metrics.registry)
        if scheduling is not None and need.rest_facade:
            # The REST facade; in a parallel run (SHADOW_URL) its reads are also asked of the
            # shadowed engine and compared (radsched/beside/shadow_gateway.py).
            facade = await open_shadow(
                settings,
                stack,
                scheduling,
                db=db,
                registry=metrics.registry,
                clock=clock,
                tz=tz,
                metrics=rest_metrics,
            )
            add_scheduling_routes(app, cast(SchedulingService, facade), secrets.api_keys, tz)
        # Then the OpenAPI document the later components add their paths to.
        openapi.install(app)

        # The SMS engine reaches the RIS over HL7 through the gateway's service, or through an
        # existing engine's REST channels (SCHEDULING_BACKEND=rest, docs/deploy.md "Beside QIE").
        sms_scheduling = scheduling
        if settings.scheduling_backend == "rest":
            rest_backend = await open_scheduling_backend(
                settings, stack, tz=tz, metrics=rest_metrics
            )
            # Structurally the same calls and errors the driver makes on the HL7 service.
            sms_scheduling = cast(SchedulingService, rest_backend)

        # Order intake + SMS conversations: before the SMS transport, which it rings through `bell`.
        engine: SmsEngine | None = None
        sms_outbox: SmsOutbox | None = None
        if need.sms:
            assert sms_scheduling is not None  # the settings refuse sms without a way to the RIS
            engine = await intake.start(
                stack,
                settings=settings,
                order_tokens=secrets.order_tokens,
                dsn=dsn,
                db=db,
                orders=orders,
                phi=phi,
                hash_key=hash_key,
                registry=metrics.registry,
                app=app,
                inbound=inbound,
                scheduling=sms_scheduling,
                outbox=bell,
                me=me,
                tz=tz,
                clock=clock,
                # "2" after the booking moves it through the lifecycle, built further down; "1"
                # tells the EMRs through it when [appointments] confirm_siu is on.
                rescheduler=lambda: lifecycle,
                confirmations=lambda: lifecycle,
            )
            started_engine = engine
            # SMS transport: calls the engine back (inbound texts, delivery failures).
            sms_outbox = await sms_transport.start(
                stack,
                settings=settings,
                auth_token=secrets.twilio_auth_token,
                db=db,
                dsn=dsn,
                phi=phi,
                signatures=WebhookSignatures(),
                registry=metrics.registry,
                app=app,
                engine=sms_engine or (lambda: started_engine),
                bell=bell,
                clock=clock,
            )

        # EMR outbox: registers the SIU booking hook; before the MLLP listener (relay handlers).
        # Without the emr role the hook still queues each SIU with its booking; another daemon sends.
        emr = await emr_component.start(
            stack,
            settings=settings,
            db=db,
            dsn=dsn,
            phi=phi,
            registry=metrics.registry,
            hl7_metrics=hl7_metrics,
            readiness=readiness,
            inbound=inbound,
            add_booking_hook=scheduling.add_booking_hook if scheduling else lambda _hook: None,
            me=me,
            tz=tz,
            clock=clock,
            deliver=need.emr_outbox,
        )
        await outbox_health.start(db, metrics.registry, stack)  # dead rows, oldest waiting
        # Appointment lifecycle: after the EMR outbox (its hook follows the S12 hook; S13/S15 go there).
        # It asks the RIS over HL7, so it runs with the gateway role.
        lifecycle: Lifecycle | None = None
        if scheduling is not None:
            lifecycle = await lifecycle_component.start(
                stack,
                db=db,
                orders=orders,
                phi=phi,
                scheduling=scheduling,
                routes=emr.routes,
                inbound=inbound,
                app=app,
                api_keys=secrets.api_keys,
                registry=metrics.registry,
                me=me,
                tz=tz,
                clock=clock,
                # Patients who booked by text hear of the RIS's cancels and moves (sms role only).
                news=NewsTexts(engine.driver, hash_key, clock) if engine is not None else None,
            )
        desk: StaffDesk | None = None
        if lifecycle is not None and engine is not None:
            # Patients' requests after booking (issue 13 item 3): decided by a person, through the
            # REST API (radsched requests) and the console's Requests page.
            desk = StaffDesk(db=db, driver=engine.driver, phi=phi, lifecycle=lifecycle, clock=clock)
            await staff_requests_api.install(
                stack,
                app=app,
                desk=desk,
                authorise=lifecycle_component.authoriser(secrets.api_keys),
                db=db,
                registry=metrics.registry,
                overdue_after=timedelta(minutes=settings.staff_request_overdue_min),
                clock=clock,
            )
            # Earlier-slot offers (issue 13 item 5): a cancel offers the freed slot to the waitlist.
            waitlist = Waitlist(
                db=db,
                driver=engine.driver,
                phi=phi,
                lifecycle=lifecycle,
                clock=clock,
                hold=timedelta(minutes=settings.waitlist_hold_min),
                registry=metrics.registry,
            )
            lifecycle.add_event_listener(waitlist.on_event)
            engine.waitlist = waitlist
            waitlist.start_sweep(stack)
        # Reminders (issue 13): planned and stopped beside the record, sent by the SMS engine's daemon.
        reminders: Reminders | None = None
        if lifecycle is not None or engine is not None:
            reminders = await sms_reminders.start(
                stack,
                settings=settings,
                db=db,
                phi=phi,
                hash_key=hash_key,
                orders=orders,
                registry=metrics.registry,
                clock=clock,
                scheduling=scheduling,
                lifecycle=lifecycle,
                conversation=engine.driver.cfg if engine is not None else None,
                wake_outbox=engine.wake_outbox if engine is not None else lambda: None,
            )
        changes_started = clock()
        # Daily purge, one daemon at a time.
        await retention.start(
            stack, settings=settings, db=db, registry=metrics.registry, clock=clock
        )

        if need.mllp_listener:  # orders (sms) and the RIS's SIU feed (emr)
            mllp_server = await _listen_mllp(
                settings, inbound, hl7_metrics, me=me, tz=tz, clock=clock
            )
            stack.push_async_callback(mllp_server.aclose, settings.shutdown_grace_s)
            listening["mllp"] = HostPort(mllp_server.host, mllp_server.port)

        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=settings.shutdown_grace_s,
            handle_signals=False,
            # Counted from the connection's start or its last response: a request whose headers
            # have not all arrived by then is cut off (slowloris), as is an idle keep-alive.
            keepalive_timeout=settings.http_idle_timeout_s,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        listening["http"] = await _bind(
            runner,
            settings.http_addr,
            setting="RADSCHED_HTTP_LISTEN",
            reuse_port=settings.reuse_port,
        )

        # Admin console on its own listener (radsched/console, docs/console.md).
        admin_addr = settings.admin_addr
        if admin_addr is not None:
            console = await console_runner(
                console_deps(
                    settings,
                    db=db,
                    phi_secret=secrets.phi_key,
                    phi=phi,
                    readiness=readiness.run,
                    clock=clock,
                    client_ip=limiter.client_ip,
                    staff=desk,
                ),
                settings=settings,
            )
            stack.push_async_callback(console.cleanup)
            listening["admin"] = await _bind(console, admin_addr, setting="RADSCHED_ADMIN_LISTEN")
            await first_admin(db, now=clock(), admin_url=f"http://{listening['admin']}")

        status = " ".join(f"{k}={v}" for k, v in listening.items())
        log.info("radsched ready", extra={"listening": status, "roles": ",".join(roles)})
        metrics.up.set(1)
        # Every component is up, every booking hook registered: bookings a previous process left
        # pending are resolved (and their SIUs queued), and conversations left waiting on the RIS
        # get their call again.
        if scheduling is not None:
            resolver = spawn(scheduling.run_resolver(ris_started_at), name="ris-resolver")
            stack.callback(resolver.cancel)
        if lifecycle is not None:
            change_resolver = spawn(
                lifecycle.run_resolver(changes_started), name="appointment-resolver"
            )
            stack.callback(change_resolver.cancel)
        if engine is not None:
            resume = spawn(intake.resume_waiting(engine), name="sms-resume")
            stack.callback(resume.cancel)
            if engine.waitlist is not None:
                moves = spawn(engine.waitlist.resume_accepting(), name="waitlist-resume")
                stack.callback(moves.cancel)
        notifier.notify(f"STATUS=listening {status}", "READY=1")
        stack.callback(notifier.notify, "STOPPING=1")

        interval = watchdog_interval()
        if interval is not None and notifier.enabled:
            task = spawn(watchdog_loop(notifier, interval), name="watchdog")
            stack.callback(task.cancel)
        yield Daemon(
            settings,
            secrets,
            metrics,
            db,
            dsn,
            readiness,
            app,
            hl7_metrics,
            inbound,
            me,
            tz,
            clock,
            hash_key,
            phi,
            orders,
            scheduling,
            engine,
            sms_outbox,
            emr,
            listening,
            lifecycle,
            reminders,
        )
        log.info("radsched stopping")
