"""SIU^S13/S14/S15/S17 of an appointment change, queued behind its S12 in the same FIFO outbox.

The S14 also tells of a patient's confirmation by text when the site turns it on (SCH-6 ``CONFIRMED``;
``[appointments] confirm_siu``, radsched.scheduling.lifecycle_component).

The notification goes to the destinations the S12 was queued to (kept on the appointment record), built in
each destination's SIU version, sealed like every outbox body. Order is the outbox's: one queue per
destination drained by id, so a change enqueued after the S12 leaves after it — also across a crash (the
rows are durable, the ids do not change).

A dead-lettered S12 (or earlier change) would let the change overtake it, since the sender moves past dead
letters. So a change queued behind a dead message of the same appointment is dead-lettered at once with the
reason ``held: follows dead-lettered <MSH-10>``; if the S12 dies later, the changes behind it are held the same
way (:func:`radsched.storage.appointments.hold_followers`). ``radsched outbox retry`` of the S12 releases them
in their original order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Protocol

from channels import Appointment, ChangeKind, OrderRef, Party, build_siu
from channels.changes import SIU_EVENTS
from radsched.emr.enqueue import UNROUTED_RECEIVER, Built, seal_body
from radsched.emr.routes import Route, Routes
from radsched.logs import correlation_id
from radsched.privacy import PhiBox
from radsched.storage import appointments as records
from radsched.storage import emr_outbox as outbox
from radsched.storage.pg import Connection

log = logging.getLogger("radsched.emr")


class AppointmentChanged(Protocol):
    """What is read of ``radsched.lifecycle.AppointmentChanged`` (structural, so the EMR component does
    not import the scheduling one)."""

    @property
    def appointment(self) -> Appointment: ...
    @property
    def order(self) -> OrderRef: ...
    @property
    def kind(self) -> ChangeKind: ...
    @property
    def destinations(self) -> tuple[str, ...]: ...
    @property
    def reason(self) -> str: ...
    @property
    def event(self) -> tuple[str, str, str] | None: ...


class ChangeNotifications:
    """The lifecycle's :class:`~radsched.lifecycle.ChangeNotifier` over the EMR outbox."""

    def __init__(
        self,
        routes: Routes,
        phi: PhiBox,
        *,
        me: Party,
        tz: tzinfo,
        clock: Callable[[], datetime],
    ) -> None:
        self._routes = routes
        self._phi = phi
        self._me = me
        self._tz = tz
        self._clock = clock

    def _route(self, destination: str) -> Route | None:
        return next((r for r in self._routes.routes if r.destination.name == destination), None)

    def _build(self, change: AppointmentChanged, route: Route | None) -> Built:
        trigger = change.kind.siu_trigger
        (code, text, system), status = SIU_EVENTS[trigger]
        event = change.event or (code, change.reason or text, system)
        out = build_siu(
            change.appointment,
            change.order,
            version=route.siu_version if route else "2.5.1",
            sender=self._me,
            receiver=route.receiver if route else UNROUTED_RECEIVER,
            trigger=trigger,
            clock=self._clock,
            tz=self._tz,
            filler_status=status,
            event_reason=event,
        )
        return Built(out.control_id, out.payload)

    async def on_changed(self, conn: Connection, change: AppointmentChanged) -> None:
        now = self._clock()
        appointment_id = change.appointment.id
        message_type = f"SIU^{change.kind.siu_trigger}"
        woken: list[str] = []
        for destination in change.destinations:
            # A destination no longer routed still gets the change in its queue (the S12 went there).
            built = self._build(change, self._route(destination))
            blocker = await records.dead_predecessor(conn, destination, appointment_id)
            await outbox.insert(
                conn,
                outbox.NewMessage(
                    destination=destination,
                    control_id=built.control_id,
                    message_type=message_type,
                    payload=seal_body(self._phi, destination, built.control_id, built.payload),
                    facility=None,
                    origin="change",
                    appointment_id=appointment_id,
                    correlation_id=correlation_id.get() or appointment_id,
                ),
                now=now,
                dead_reason=f"{records.HELD_PREFIX}{blocker}" if blocker else None,
            )
            if blocker:
                log.warning(
                    "change notification held behind a dead letter",
                    extra={"appointment_id": appointment_id, "destination": destination},
                )
            else:
                woken.append(destination)
        await outbox.notify(conn, woken)
