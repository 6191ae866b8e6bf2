"""The composition root: start resources in dependency order, stop them in reverse.

Everything the daemon owns is entered into one ``AsyncExitStack``; leaving the stack (SIGTERM, a
start-up failure) unwinds exactly what was started, newest first. Readiness is announced to systemd
only after every listener is bound.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiohttp import web

import mllp
from channels import Party
from radsched import emr as emr_component
from radsched import retention
from radsched import ris as ris_component
from radsched.datadir import prepare_data_dir
from radsched.errors import ConfigError, StartupError
from radsched.hl7metrics import HL7Metrics
from radsched.http.app import build_app
from radsched.http.health import Readiness, add_health_routes
from radsched.http.ratelimit import RateLimiter
from radsched.inbound import InboundRouter
from radsched.intake import start as start_intake
from radsched.logs import RedactingFilter
from radsched.metrics import Metrics
from radsched.orders import OrderStore
from radsched.privacy import KeyFormatError, PhiBox, parse_key
from radsched.ris.service import SchedulingService
from radsched.secrets_store import Secrets, resolve_secrets
from radsched.settings import HostPort, Settings
from radsched.sms import sender as sms_sender
from radsched.sms.engine import SmsEngine
from radsched.sms.outbox import SmsOutbox
from radsched.storage.connect import storage
from radsched.storage.db import Database
from radsched.storage.migrate import migrate
from radsched.systemd import Notifier, watchdog_interval, watchdog_loop
from radsched.tls import listener_context

log = logging.getLogger("radsched.daemon")


@dataclass
class Daemon:
    """The running daemon's parts, for components and tests to reach each other."""

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
    listening: dict[str, HostPort] = field(default_factory=dict)
    # Set by the RIS component, which starts first (radsched/ris).
    scheduling: SchedulingService = field(init=False)
    sms_engine: SmsEngine | None = None
    emr: emr_component.EmrOutbox | None = None
    sms_outbox: SmsOutbox | None = None
    # Set once every component has started (hooks registered, listeners bound): background work that
    # needs the whole daemon (the RIS booking resolver runs booking hooks) waits for it.
    started: asyncio.Event = field(default_factory=asyncio.Event)


async def _bind(runner: web.AppRunner, addr: HostPort, *, setting: str) -> HostPort:
    site = web.TCPSite(runner, addr.host, addr.port, reuse_address=True)
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


async def _listen_mllp(daemon: Daemon) -> mllp.Server:
    settings = daemon.settings
    addr = settings.mllp_addr
    try:
        return await mllp.start_server(
            daemon.inbound.handle_frame,
            addr.host,
            addr.port,
            ssl=listener_context(settings),
            max_connections=settings.mllp_max_connections,
            idle_timeout=settings.mllp_idle_timeout_s,
            frame_timeout=settings.mllp_frame_timeout_s,
            max_frame_size=settings.mllp_max_frame_bytes,
            on_framing_error=daemon.inbound.on_framing_error,
            observer=daemon.hl7_metrics.observer("listener"),
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
) -> AsyncIterator[Daemon]:
    """Start the daemon; yield it while it runs; stop everything in reverse order on exit."""
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
            redactor.set_secrets([*secrets.values(), *([dsn_secret] if dsn_secret else [])])
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

        limiter = RateLimiter.from_settings(settings, secrets, hash_key, metrics.registry)
        app = build_app(metrics.registry, rate_limiter=limiter)
        add_health_routes(app, readiness, metrics)
        hl7_metrics = HL7Metrics(metrics.registry)
        me = Party(settings.sending_app, settings.sending_facility)
        tz = ZoneInfo(settings.timezone)
        inbound = InboundRouter(db, me, hl7_metrics, tz=tz, clock=clock)
        daemon = Daemon(
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
            OrderStore(hash_key, phi),
        )

        # --- components plug in here, in dependency order ---

        # RIS gateway first: sets daemon.scheduling, which the SMS and EMR components use.
        await ris_component.start(daemon, stack)

        # Order intake + SMS conversations: after the RIS (daemon.scheduling), before the SMS transport.
        await start_intake(daemon, stack)

        # SMS transport: after the RIS and the SMS engine (it reaches daemon.sms_engine lazily).
        await sms_sender.start(daemon, stack)

        # EMR outbox: after the RIS (booking hook); before the MLLP listener (relay handlers).
        daemon.emr = await emr_component.start(daemon, stack)
        await retention.start(daemon, stack)  # daily purge, one daemon at a time

        mllp_server = await _listen_mllp(daemon)
        stack.push_async_callback(mllp_server.aclose, settings.shutdown_grace_s)
        daemon.listening["mllp"] = HostPort(mllp_server.host, mllp_server.port)

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
        daemon.listening["http"] = await _bind(
            runner, settings.http_addr, setting="RADSCHED_HTTP_LISTEN"
        )

        # Admin console on its own listener (radsched/console, docs/console.md).
        admin_addr = settings.admin_addr
        if admin_addr is not None:
            from radsched.console.component import console_deps, console_runner, first_admin

            console = await console_runner(
                console_deps(
                    settings,
                    db=db,
                    phi_secret=secrets.phi_key,
                    phi=phi,
                    readiness=readiness.run,
                    clock=clock,
                    client_ip=limiter.client_ip,
                ),
                settings=settings,
            )
            stack.push_async_callback(console.cleanup)
            daemon.listening["admin"] = await _bind(
                console, admin_addr, setting="RADSCHED_ADMIN_LISTEN"
            )
            await first_admin(db, now=clock(), admin_url=f"http://{daemon.listening['admin']}")

        status = " ".join(f"{k}={v}" for k, v in daemon.listening.items())
        log.info("radsched ready", extra={"listening": status})
        metrics.up.set(1)
        daemon.started.set()
        notifier.notify(f"STATUS=listening {status}", "READY=1")
        stack.callback(notifier.notify, "STOPPING=1")

        interval = watchdog_interval()
        if interval is not None and notifier.enabled:
            task = asyncio.create_task(watchdog_loop(notifier, interval), name="watchdog")
            stack.callback(task.cancel)
        yield daemon
        log.info("radsched stopping")
