"""Writing SIU messages into ``hl7_outbox`` inside the caller's transaction, one row per route.

Two callers: the booking hook (a booking the RIS confirmed becomes an SIU^S12 built per destination
dialect) and relay mode (an SIU from the RIS is forwarded, see :mod:`radsched.emr.relay`). Either way
the rows commit with the state change that caused them, the body is sealed with ``PHI_KEY`` (the
AAD names the destination and MSH-10, so a body copied onto another row does not open), and a NOTIFY
wakes the senders of those destinations on every daemon once the transaction commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from channels import Appointment, OrderRef, Party, build_siu
from channels.siu_convert import canonical_version, convert_siu
from radsched.emr.metrics import EmrMetrics
from radsched.emr.routes import UNROUTED, Route, Routes
from radsched.logs import correlation_id
from radsched.privacy import PhiBox
from radsched.storage import emr_outbox as store
from radsched.storage.pg import Connection

log = logging.getLogger("radsched.emr")

UNROUTED_RECEIVER = Party("EMR", "EMR")


class BookedAppointmentLike(Protocol):
    """What the hook reads of ``radsched.scheduling.service.BookedAppointment`` (kept structural so this
    package does not import the RIS gateway)."""

    @property
    def booking_id(self) -> uuid.UUID: ...
    @property
    def order(self) -> OrderRef: ...
    @property
    def facility(self) -> str | None: ...
    @property
    def appointment(self) -> Appointment: ...


def body_aad(destination: str, control_id: str) -> bytes:
    return f"hl7_outbox:{destination}:{control_id}".encode()


def seal_body(phi: PhiBox, destination: str, control_id: str, payload: bytes) -> bytes:
    # latin-1 maps every byte to one code point, so any charset the HL7 arrived in survives JSON.
    return phi.seal({"hl7": payload.decode("latin-1")}, aad=body_aad(destination, control_id))


def open_body(phi: PhiBox, destination: str, control_id: str, sealed: bytes) -> bytes:
    text: str = phi.open(sealed, aad=body_aad(destination, control_id))["hl7"]
    return text.encode("latin-1")


@dataclass(frozen=True, slots=True)
class Built:
    control_id: str
    payload: bytes


BuildFor = Callable[[Route | None], Built]
"""Builds the message for one route (``None``: the body kept with an unrouted dead letter)."""


class OutboxWriter:
    def __init__(
        self,
        routes: Routes,
        phi: PhiBox,
        metrics: EmrMetrics,
        *,
        me: Party,
        tz: tzinfo,
        clock: Callable[[], datetime],
    ) -> None:
        self.routes = routes
        self._phi = phi
        self._metrics = metrics
        self._me = me
        self.tz = tz
        self._clock = clock

    async def enqueue(
        self,
        conn: Connection,
        *,
        facility: str | None,
        origin: str,
        message_type: str,
        appointment_id: str,
        correlation: str,
        build: BuildFor,
        source_control_id: str | None = None,
    ) -> list[int]:
        """One row per route of ``facility``; a dead letter (destination ``unrouted``) when none."""
        now = self._clock()
        routes = self.routes.for_facility(facility)

        def row(destination: str, built: Built) -> store.NewMessage:
            return store.NewMessage(
                destination=destination,
                control_id=built.control_id,
                message_type=message_type,
                payload=seal_body(self._phi, destination, built.control_id, built.payload),
                facility=facility,
                origin=origin,
                appointment_id=appointment_id,
                correlation_id=correlation,
                source_control_id=source_control_id,
            )

        ids = [await store.insert(conn, row(r.destination.name, build(r)), now=now) for r in routes]
        if routes:
            await store.notify(conn, (r.destination.name for r in routes))
            return ids
        reason = f"no EMR route for facility {facility or '(none)'!r} and no default route '*'"
        ids.append(
            await store.insert(conn, row(UNROUTED, build(None)), now=now, dead_reason=reason)
        )
        self._metrics.unrouted.labels(origin).inc()
        self._metrics.dead_lettered.labels(UNROUTED, "unrouted").inc()
        log.error(
            "SIU dead-lettered: facility has no EMR route",
            extra={"facility": facility or "", "appointment_id": appointment_id, "origin": origin},
        )
        return ids

    async def on_booked(self, conn: Connection, booked: BookedAppointmentLike) -> None:
        """The booking hook: runs in the transaction that marks the booking 'booked'."""
        appointment, order = booked.appointment, booked.order

        def build(route: Route | None) -> Built:
            # Built in its native form (2.3 or 2.5.1), then moved to the route's version.
            version = route.siu_version if route else "2.5.1"
            native = canonical_version(version)
            out = build_siu(
                appointment,
                order,
                version=native,
                sender=self._me,
                receiver=route.receiver if route else UNROUTED_RECEIVER,
                clock=self._clock,
                tz=self.tz,
            )
            payload = out.payload if version == native else convert_siu(out.payload, version)
            return Built(out.control_id, payload)

        await self.enqueue(
            conn,
            facility=booked.facility,
            origin="booking",
            message_type="SIU^S12",
            appointment_id=appointment.id,
            correlation=correlation_id.get() or booked.booking_id.hex,
            build=build,
        )
