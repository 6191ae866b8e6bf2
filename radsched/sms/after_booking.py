"""Replies after a booking (issue 13 items 2 and 3), and staff's decisions on the requests they raise.

``AfterBooking`` runs inside the inbound text's transaction: "1" marks the appointment confirmed (and,
when the site turns it on, queues an SIU^S14 with the confirmation to the EMRs),
"3" (or several upcoming appointments) raises a staff request, and STOP/CANCEL (which revoke
consent the usual way first) raise a "patient opted out; may want to cancel" request for each
upcoming appointment. ``StaffDesk`` approves (a cancel through the appointment lifecycle: SRM^S04 or
ORM CA to the RIS, SIU^S15 to the EMRs) or denies, then texts the patient the answer. The number to
text is sealed in the request and deleted with the decision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from radsched.conversation.after_booking import Booked, Reply, decision_commands, reply_commands
from radsched.logs import correlation_id
from radsched.privacy import PhiBox
from radsched.sms.driver import Driver
from radsched.storage import appointments, staff_requests
from radsched.storage.appointments import AppointmentRow
from radsched.storage.audit import AuditTrail
from radsched.storage.consents import get_consent
from radsched.storage.db import Database
from radsched.storage.pg import Connection
from radsched.storage.staff_requests import StaffRequest

__all__ = ["AfterBooking", "Canceller", "Confirmations", "Decision", "DeskError", "StaffDesk"]

log = logging.getLogger("radsched.sms.staff")


def _aad(request_id: int) -> bytes:
    return b"staff_request:" + str(request_id).encode()


class Confirmations(Protocol):
    """Tells the EMRs of a confirmation (radsched.scheduling.lifecycle.Lifecycle.confirmed: an SIU^S14
    when the site turns it on), in the reply's transaction."""

    async def confirmed(self, conn: Connection, appointment_id: str) -> bool: ...


class AfterBooking:
    def __init__(
        self,
        driver: Driver,
        phi: PhiBox,
        clock: Callable[[], datetime],
        *,
        confirmations: Callable[[], Confirmations | None] = lambda: None,
    ) -> None:
        """``confirmations`` is late-bound: the lifecycle that queues the S14 is built after this
        component (the composition root passes ``lambda: lifecycle``)."""
        self._driver = driver
        self._phi = phi
        self._clock = clock
        self._confirmations = confirmations

    async def upcoming(self, conn: Connection, phone_hash: str) -> list[AppointmentRow]:
        return await appointments.upcoming_for_phone(conn, phone_hash, now=self._clock())

    async def on_reply(
        self,
        conn: Connection,
        reply: Reply,
        upcoming: Sequence[AppointmentRow],
        *,
        phone: str,
        phone_hash: str,
        correlation: str,
    ) -> str:
        """Record the reply; return what was recorded (``change``: the caller starts the change
        conversation, whose first step asks the RIS)."""
        now = self._clock()
        booked = [Booked(r.modality, r.start_at) for r in upcoming]
        commands, record = reply_commands(reply, booked, self._driver.cfg)
        if record == "confirmed":
            appointment_id = upcoming[0].appointment_id
            # A second "1" is thanked again but tells the EMRs nothing new.
            if await appointments.mark_confirmed(conn, appointment_id, now=now):
                confirmations = self._confirmations()
                if confirmations is not None:
                    await confirmations.confirmed(conn, appointment_id)
        elif record != "change":
            target = upcoming[0] if record == "cancel" else None
            await self._request(
                conn,
                "cancel" if record == "cancel" else "unclear",
                target,
                phone=phone,
                phone_hash=phone_hash,
                correlation=correlation,
            )
        consent = await get_consent(conn, phone_hash)
        modality = upcoming[0].modality if len(upcoming) == 1 else None
        trail = AuditTrail(phone_hash, None, correlation, modality, consent.value)
        trail.add("reply_" + reply.value, "inbound", record)
        await self._driver.perform_outside(
            conn, commands, trail=trail, phone=phone, now=now, modality=modality
        )
        return record

    async def on_opted_out(
        self,
        conn: Connection,
        upcoming: Sequence[AppointmentRow],
        *,
        phone: str,
        phone_hash: str,
        correlation: str,
    ) -> None:
        """Never a silent cancel: a person decides (and no text goes to the opted-out phone)."""
        for row in upcoming:
            await self._request(
                conn, "opted_out", row, phone=phone, phone_hash=phone_hash, correlation=correlation
            )

    async def _request(
        self,
        conn: Connection,
        kind: staff_requests.Kind,
        row: AppointmentRow | None,
        *,
        phone: str,
        phone_hash: str,
        correlation: str,
    ) -> None:
        request_id = await staff_requests.next_id(conn)
        created = await staff_requests.create(
            conn,
            request_id,
            appointment_id=row.appointment_id if row is not None else None,
            kind=kind,
            phone_hash=phone_hash,
            phi=self._phi.seal({"phone": phone}, aad=_aad(request_id)),
            modality=row.modality if row is not None else None,
            now=self._clock(),
            correlation_id=correlation,
        )
        if created:
            log.info("staff request raised", extra={"request": request_id, "kind": kind})


class Canceller(Protocol):
    """The appointment lifecycle's cancel (radsched.scheduling.lifecycle.Lifecycle)."""

    async def cancel(
        self, appointment_id: str, *, origin: Literal["sms"], reason: str = ""
    ) -> object: ...


class DeskError(Exception):
    """A request cannot be decided that way; ``status`` is the HTTP status the API answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Decision:
    request: StaffRequest
    texted: bool


class StaffDesk:
    def __init__(
        self,
        *,
        db: Database,
        driver: Driver,
        phi: PhiBox,
        lifecycle: Canceller,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._driver = driver
        self._phi = phi
        self._lifecycle = lifecycle
        self._clock = clock

    async def list(self, state: staff_requests.State | None) -> list[StaffRequest]:
        async with self._db.transaction("staff.list") as conn:
            return await staff_requests.list_requests(conn, state=state)

    async def approve(self, request_id: int, *, by: str, note: str | None = None) -> Decision:
        async with self._db.transaction("staff.approve_lookup") as conn:
            request = await self._pending(conn, request_id)
            if request.appointment_id is None or request.kind == "unclear":
                raise DeskError(
                    409,
                    "needs_a_person",
                    "the reply names no single appointment: call the patient, then deny it "
                    "with a note or cancel the right appointment (radsched appointment cancel)",
                )
        # Outside any transaction: the lifecycle's cancel is crash-safe and idempotent on its own
        # (SRM^S04 / ORM CA to the RIS, SIU^S15 to the EMRs); a refusal raises and decides nothing.
        await self._lifecycle.cancel(
            request.appointment_id, origin="sms", reason="asked by the patient by text"
        )
        return await self._decide(request_id, approved=True, by=by, note=note)

    async def deny(self, request_id: int, *, by: str, note: str | None) -> Decision:
        return await self._decide(request_id, approved=False, by=by, note=note)

    async def _pending(self, conn: Connection, request_id: int) -> StaffRequest:
        request = await staff_requests.get(conn, request_id, for_update=True)
        if request is None:
            raise DeskError(404, "unknown_request", f"no staff request {request_id}")
        if request.state != "pending":
            raise DeskError(409, "already_decided", f"request {request_id} is {request.state}")
        return request

    async def _decide(
        self, request_id: int, *, approved: bool, by: str, note: str | None
    ) -> Decision:
        now = self._clock()
        async with self._db.transaction("staff.decide") as conn:
            request = await self._pending(conn, request_id)
            row = (
                await appointments.get(conn, request.appointment_id)
                if request.appointment_id
                else None
            )
            booked = Booked(row.modality, row.start_at) if row is not None else None
            consent = await get_consent(conn, request.phone_hash)
            # "Opted out; may want to cancel": the patient asked for no more texts.
            wants_texts = request.kind != "opted_out"
            commands = (
                decision_commands(
                    approved=approved, consent=consent, booked=booked, cfg=self._driver.cfg
                )
                if wants_texts
                else []
            )
            phone = (
                str(self._phi.open(request.phi, aad=_aad(request.id))["phone"])
                if request.phi is not None
                else None
            )
            await staff_requests.decide(
                conn,
                request_id,
                state="approved" if approved else "denied",
                by=by,
                note=note,
                now=now,
            )
            if request.appointment_id is not None:
                await appointments.audit(
                    conn,
                    appointment_id=request.appointment_id,
                    by=by,
                    old=f"staff request {request.id} ({request.kind})",
                    new="approved" if approved else "denied",
                    note=note or "",
                    now=now,
                )
            trail = AuditTrail(
                request.phone_hash,
                None,
                correlation_id.get() or request.correlation_id,
                request.modality,
                consent.value,
            )
            trail.add("staff_" + ("approved" if approved else "denied"), "system", request.kind)
            texted = False
            if phone is not None:
                result = await self._driver.perform_outside(
                    conn, commands, trail=trail, phone=phone, now=now, modality=request.modality
                )
                texted = result.texts > 0
            else:
                await trail.flush(conn, now)
            decided = await staff_requests.get(conn, request_id)
        assert decided is not None
        log.info(
            "staff request decided",
            extra={"request": request_id, "approved": approved, "texted": texted},
        )
        return Decision(decided, texted)
