"""SIU to the EMRs: store-and-forward outbox, routing by facility, relay mode, one sender per destination.

The component (``await emr.start(stack, ...)`` in the composition root):

* parses ``EMR_ROUTES`` (:mod:`.routes`) or, when unset, starts the in-process EMR sink (:mod:`.sink`);
* registers the booking hook with the scheduling service (:mod:`.enqueue`) and the relay handlers for
  SIU^S12-S15/S26 with the inbound router (:mod:`.relay`) — both write ``hl7_outbox`` rows in the
  transaction of the change that caused them;
* runs one :class:`~.sender.DestinationSender` per destination, coordinated across daemons by
  advisory locks and woken by LISTEN/NOTIFY (:mod:`.coordinator`);
* exports per-destination metrics (:mod:`.metrics`) and a readiness check that names destinations
  failing for longer than ``EMR_FAILING_ALERT_S``.

Operator side: ``radsched outbox`` (radsched/commands/outbox.py) and docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from channels import Party
from radsched.emr.enqueue import OutboxWriter
from radsched.emr.metrics import EmrMetrics
from radsched.emr.relay import RELAYED, relay_handler, relay_senders
from radsched.emr.routes import Routes, parse_routes, sink_routes
from radsched.emr.sender import DestinationSender, EmrSenderConfig
from radsched.emr.sink import EmrSink
from radsched.hl7metrics import HL7Metrics
from radsched.inbound.exposure import is_loopback
from radsched.inbound.router import InboundRouter
from radsched.privacy import PhiBox
from radsched.rest.health import Readiness
from radsched.scheduling.service import BookingHook
from radsched.settings import HostPort, Settings
from radsched.storage.db import Database
from radsched.storage.destination_locks import Coordinator
from radsched.storage.emr_outbox import queue_stats
from radsched.tasks import spawn

__all__ = ["EmrOutbox", "start"]

log = logging.getLogger("radsched.emr")

STATS_INTERVAL_S = 5.0


class EmrOutbox:
    """The running EMR component, reachable as ``daemon.emr``."""

    def __init__(
        self,
        *,
        routes: Routes,
        writer: OutboxWriter,
        senders: dict[str, DestinationSender],
        coordinator: Coordinator,
        db: Database,
        metrics: EmrMetrics,
        clock: Callable[[], datetime],
        failing_alert_s: float,
        sink: EmrSink | None,
    ) -> None:
        self.routes = routes
        self.writer = writer
        self.senders = senders
        self.sink = sink
        self.metrics = metrics
        self._coordinator = coordinator
        self._db = db
        self._clock = clock
        self._failing_alert_s = failing_alert_s
        self._tasks: list[asyncio.Task[None]] = []
        self._oldest: dict[str, datetime | None] = {}

    def wake(self, destination: str = "*") -> None:
        """Wake one destination's sender (``*``: all); NOTIFY payloads arrive here."""
        if destination == "*":
            for sender in self.senders.values():
                sender.wake()
        elif destination in self.senders:
            self.senders[destination].wake()

    async def start(self) -> None:
        await self._coordinator.start()
        for sender in self.senders.values():
            self._tasks.append(spawn(sender.run(), name=f"emr:{sender.name}"))
        self._tasks.append(spawn(self._stats_loop(), name="emr-stats"))

    async def refresh_stats(self) -> None:
        """Queue gauges from the shared table (every daemon reports the same numbers)."""
        async with self._db.transaction("emr.stats") as conn:
            stats = await queue_stats(conn)
        seen = set(self.senders)
        for s in stats:
            self._track(s.destination)
            self.metrics.queued.labels(s.destination).set(s.pending)
            self.metrics.dead_letters.labels(s.destination).set(s.dead)
            self._oldest[s.destination] = s.oldest
            seen.discard(s.destination)
        for name in seen:  # configured destinations with nothing queued
            self.metrics.queued.labels(name).set(0)
            self.metrics.dead_letters.labels(name).set(0)
            self._oldest[name] = None

    def _track(self, name: str) -> None:
        if name not in self._oldest:
            self._oldest[name] = None
            self.metrics.oldest_age.labels(name).set_function(lambda: self._age(name))

    def _age(self, name: str) -> float:
        oldest = self._oldest.get(name)
        return 0.0 if oldest is None else max(0.0, (self._clock() - oldest).total_seconds())

    async def _stats_loop(self) -> None:
        for name in self.senders:
            self._track(name)
        while True:
            try:
                await self.refresh_stats()
            except Exception:
                log.warning("EMR outbox statistics failed", exc_info=True)
            await asyncio.sleep(STATS_INTERVAL_S)

    async def readiness(self) -> str | None:
        """Destinations this daemon drains that have failed for longer than the alert threshold."""
        failing = [
            f"{s.name} failing for {s.failing_for():.0f} s ({s.last_failure})"
            for s in self.senders.values()
            if s.failing_for() > self._failing_alert_s
        ]
        return "; ".join(failing) or None

    async def aclose(self, grace: float) -> None:
        for sender in self.senders.values():
            sender.stop()
        runners = self._tasks[:-1]
        if runners:
            _done, pending = await asyncio.wait(runners, timeout=grace)
            for task in pending:
                task.cancel()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sender in self.senders.values():
            await sender.aclose()
        await self._coordinator.aclose()


def sender_config(s: Settings) -> EmrSenderConfig:
    return EmrSenderConfig(
        ack_timeout_s=s.emr_ack_timeout_s,
        max_rejections=s.emr_max_rejections,
        retry_initial_s=s.emr_retry_initial_s,
        retry_max_s=max(s.emr_retry_max_s, s.emr_retry_initial_s),
    )


async def start(
    stack: AsyncExitStack,
    *,
    settings: Settings,
    db: Database,
    dsn: str,
    phi: PhiBox,
    registry: CollectorRegistry,
    hl7_metrics: HL7Metrics,
    readiness: Readiness,
    inbound: InboundRouter,
    add_booking_hook: Callable[[BookingHook], None],
    me: Party,
    tz: ZoneInfo,
    clock: Callable[[], datetime],
    deliver: bool = True,
) -> EmrOutbox:
    """Start the EMR component; its teardown is pushed onto ``stack``.

    ``deliver=False`` (a daemon without the ``emr`` role, issue 17): bookings made here still queue
    their SIU in the booking's own transaction — the outbox row is the promise — but no sender, relay
    or sink runs; an ``emr`` daemon on the same database sends them."""
    sink: EmrSink | None = None
    if settings.emr_routes:
        routes = parse_routes(settings.emr_routes)
    elif not deliver:
        # Only the destination's name goes into a queued row; the emr daemon knows the address.
        routes = sink_routes(HostPort("127.0.0.1", 0))
    else:
        sink = EmrSink(hl7_metrics, tz=tz, clock=clock)
        await sink.start()
        stack.push_async_callback(sink.aclose)
        routes = sink_routes(sink.address)
        log.info(
            "EMR_ROUTES unset: SIUs go to the in-process EMR sink",
            extra={"sink": str(sink.address)},
        )
    metrics = EmrMetrics(registry)
    writer = OutboxWriter(routes, phi, metrics, me=me, tz=tz, clock=clock)
    senders: dict[str, DestinationSender] = {}
    coordinator = Coordinator(dsn)
    config = sender_config(settings)
    if not deliver:
        add_booking_hook(writer.on_booked)
        log.info("EMR role not run here: SIUs are queued for an emr daemon")
        return EmrOutbox(
            routes=routes,
            writer=writer,
            senders=senders,
            coordinator=coordinator,
            db=db,
            metrics=metrics,
            clock=clock,
            failing_alert_s=settings.emr_failing_alert_s,
            sink=None,
        )
    for dest in routes.destinations:
        senders[dest.name] = DestinationSender(
            dest,
            db=db,
            coordinator=coordinator,
            phi=phi,
            metrics=metrics,
            hl7_metrics=hl7_metrics,
            config=config,
            clock=clock,
        )
    outbox = EmrOutbox(
        routes=routes,
        writer=writer,
        senders=senders,
        coordinator=coordinator,
        db=db,
        metrics=metrics,
        clock=clock,
        failing_alert_s=settings.emr_failing_alert_s,
        sink=sink,
    )
    coordinator.on_notify = outbox.wake

    # Whether another host could pretend to be the RIS: the listener is off loopback and neither an
    # address allow-list nor client certificates narrow who connects.
    exposed = not (
        is_loopback(settings.mllp_addr.host)
        or settings.mllp_allowed_peers.strip()
        or settings.mllp_tls_ca is not None
    )
    senders_allowed = await relay_senders(
        settings.relay_policy, settings.ris_hostport, exposed=exposed
    )
    handler = relay_handler(writer, senders_allowed)
    for message_type in RELAYED:
        inbound.register(message_type, handler)
    add_booking_hook(writer.on_booked)
    readiness.add("emr", outbox.readiness)

    await outbox.start()
    stack.push_async_callback(outbox.aclose, settings.shutdown_grace_s)
    log.info(
        "EMR outbox started",
        extra={"destinations": ",".join(sorted(senders)), "relay": ",".join(RELAYED)},
    )
    return outbox
