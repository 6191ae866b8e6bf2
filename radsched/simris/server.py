"""The simulated RIS: answers location and slot queries and bookings in both dialects over MLLP.

Message types (responder side of :mod:`channels.dialects`):

* ``QRY^Q01`` with QRD-9 ``SOP`` → qie-2.3 slot query → ``DSR^Q01``; any other ``QRY^Q01`` → location query →
  ``DSR^Q01`` (answered in the dialect of the request's version: 2.5.x → ch10-2.5.1, else qie-2.3);
* ``SQM^S25`` → ch10 slot query → ``SQR^S25``;
* ``SRM^S01`` → ch10 booking → ``SRR^S01`` (AA + SCH-2, or AE "slot already booked");
* ``ORM^O01`` → qie-2.3 booking → ``ACK`` (AA, or AE); with ORC-1 ``XO`` for an appointment it holds (OBR-18)
  → reschedule → ``ACK``; with ORC-1 ``CA`` → cancel → ``ORR^O02`` ORC-1 ``CR`` (or ``UC``, unable);
* ``SRM^S02`` / ``SRM^S04`` → ch10 reschedule / cancel → ``SRR^S02`` / ``SRR^S04`` (AA, or AE).

A cancel frees the slot (it is offered and bookable again); a reschedule frees the old slot and keeps the
RIS appointment id; a refused reschedule leaves the appointment where it was.

Acting as staff (:meth:`SimRis.staff_cancel`, :meth:`SimRis.staff_move`, :meth:`SimRis.staff_noshow`, also on
the control channel): the calendar changes and an SIU^S15 / SIU^S13 goes to ``notify`` (radsched's
``MLLP_LISTEN``), as a real RIS announces a change made at its front desk; a no-show changes nothing in the
calendar and sends SIU^S26.

Bookings are real: a booked slot is no longer offered and a second booking of it gets AE. A request whose
sender and MSH-10 were seen before gets the original reply again and changes nothing (real RISes and
interface engines de-duplicate the same way), which is what lets the daemon re-send a booking whose reply
it never saw.

Fault switches (:class:`Faults`), settable at start and at run time (see :mod:`radsched.simris.control`):

* ``nak`` (``AE``/``AR``) and ``garbage``: the request is NOT processed; the answer is a NAK / non-HL7 bytes;
* ``delay`` (seconds), ``stall`` and ``drop``: the request IS processed, then the reply is late, held until
  the stall is cleared, or lost with the connection — what a RIS that booked but whose answer never
  arrived looks like;
* ``wrong_id``: the reply acknowledges another control id (a "late reply" the daemon must discard);
* ``refuse_changes``: reschedules and cancels are processed as "unable" (AE, or ORC-1 UC) and change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import mllp
from channels import (
    AckCode,
    Appointment,
    ChangeKind,
    ChangeRequest,
    Dialect,
    Location,
    Message,
    OrderRef,
    OutboundMessage,
    ParseError,
    Party,
    SlotQuery,
    get_dialect,
    parse,
    random_control_ids,
    read_ack,
)
from channels.header import request_header
from channels.model import DEFAULT_LOCAL
from radsched.simris.calendar import Booking, Calendar

log = logging.getLogger("radsched.simris")

DIALECT_NAMES = ("ch10-2.5.1", "qie-2.3")
STAFF_PARTY = Party("SIMRIS", "SIMRIS")
"""MSH-3/4 of the SIU the simulator sends when acting as staff."""
_BY_TYPE = {
    ("SQM", "S25"): "ch10-2.5.1",
    ("SRM", "S01"): "ch10-2.5.1",
    ("SRM", "S02"): "ch10-2.5.1",
    ("SRM", "S04"): "ch10-2.5.1",
    ("ORM", "O01"): "qie-2.3",
}


class FaultError(ValueError):
    """A fault setting with a bad name or value."""


@dataclass
class Faults:
    delay: float = 0.0
    stall: bool = False
    drop: bool = False
    nak: str = ""
    garbage: bool = False
    wrong_id: bool = False
    refuse_changes: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, values: Mapping[str, object]) -> None:
        """Apply a partial update (the control channel's JSON); validates before changing anything."""
        known = {f.name: f.type for f in fields(self)}
        staged: dict[str, object] = {}
        for name, value in values.items():
            if name not in known:
                raise FaultError(f"unknown fault {name!r} (known: {', '.join(sorted(known))})")
            if name == "delay":
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise FaultError("delay must be a number of seconds >= 0")
                staged[name] = float(value)
            elif name == "nak":
                text = str(value or "").upper()
                if text not in ("", "AE", "AR"):
                    raise FaultError("nak must be '', 'AE' or 'AR'")
                staged[name] = text
            else:
                if not isinstance(value, bool):
                    raise FaultError(f"{name} must be true or false")
                staged[name] = value
        for name, value in staged.items():
            setattr(self, name, value)


class _Drop(Exception):
    """Raised from the handler to close the connection without a reply (the ``drop`` fault)."""


class SimRis:
    """An MLLP server with a :class:`Calendar`. ``await start()``; ``port`` is then the bound port.

    ``overrides`` maps a dialect name to its site overrides (the daemon's ``[dialect]`` table applies to
    the daemon's ``RIS_DIALECT`` only, so the simulator applies it to that dialect only).
    """

    def __init__(
        self,
        calendar: Calendar,
        *,
        dialects: tuple[str, ...] = DIALECT_NAMES,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
        notify: tuple[str, int] | None = None,
        staff_party: Party = STAFF_PARTY,
        notify_party: Party = DEFAULT_LOCAL,
    ) -> None:
        self.calendar = calendar
        self.faults = faults or Faults()
        self.accepted = frozenset(dialects)
        clock = clock or calendar.clock
        self._dialects: dict[str, Dialect] = {
            name: get_dialect(name, (overrides or {}).get(name), tz=calendar.tz, clock=clock)
            for name in DIALECT_NAMES
        }
        #: (message type, MSH-10) of every frame received, in order.
        self.received: list[tuple[str, str]] = []
        #: The last requests and replies as bytes (bounded), for tests that inspect the HL7 itself.
        self.exchanges: deque[tuple[bytes, bytes]] = deque(maxlen=1000)
        self.counts: Counter[str] = Counter()
        self.duplicates = 0
        #: Seconds the RIS spent on each request (parse, calendar, build), fault delays excluded.
        self.service_seconds: deque[float] = deque(maxlen=200_000)
        self._replies: dict[tuple[str, str, str], bytes] = {}
        self._slot_answers: dict[tuple[object, ...], tuple[str, str, OutboundMessage]] = {}
        self._resume = asyncio.Event()
        self._resume.set()
        self._changed = asyncio.Condition()
        self._server: mllp.Server | None = None
        #: Where staff-side SIU go (radsched's MLLP_LISTEN); None = changes stay in the calendar.
        self.notify = notify
        self._staff = {
            name: get_dialect(
                name, (overrides or {}).get(name), local=staff_party, tz=calendar.tz, clock=clock
            )
            for name in DIALECT_NAMES
        }
        self._notify_party = notify_party
        self._notify_client: mllp.Client | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl: _ssl.SSLContext | None = None
    ) -> SimRis:
        self._server = await mllp.start_server(
            self.handle, host, port, ssl=ssl, on_handler_error=self._on_error
        )
        return self

    @property
    def host(self) -> str:
        assert self._server is not None
        return self._server.host

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.port

    async def aclose(self, grace: float = 0.5) -> None:
        self._resume.set()  # let stalled replies go so connections can close
        if self._notify_client is not None:
            await self._notify_client.aclose()
        if self._server is not None:
            await self._server.aclose(grace)

    async def __aenter__(self) -> SimRis:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- faults ---------------------------------------------------------------------------------

    def set_faults(self, **values: object) -> None:
        self.faults.update(values)
        if self.faults.stall:
            self._resume.clear()
        else:
            self._resume.set()

    def clear_faults(self) -> None:
        self.faults = Faults()
        self._resume.set()

    # ---- what tests and the control channel read ---------------------------------------------------

    @property
    def bookings(self) -> dict[str, Booking]:
        return self.calendar.bookings

    def frames_of(self, message_type: str) -> list[str]:
        """Control ids received for ``message_type`` (e.g. ``SRM^S01``), duplicates included."""
        return [cid for kind, cid in self.received if kind == message_type]

    async def wait_for_frames(self, message_type: str, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.frames_of(message_type)) >= count)

    def stats(self) -> dict[str, Any]:
        times = sorted(self.service_seconds)

        def pct(q: float) -> float:
            return round(times[min(len(times) - 1, int(q * len(times)))] * 1e6, 1) if times else 0.0

        return {
            "frames": dict(self.counts),
            "duplicates": self.duplicates,
            "bookings": len(self.calendar.bookings),
            "service_us": {"count": len(times), "p50": pct(0.5), "p99": pct(0.99)},
        }

    def reset_timing(self) -> None:
        self.service_seconds.clear()

    # ---- the MLLP handler ---------------------------------------------------------------------------

    async def handle(self, payload: bytes, peer: object) -> bytes | None:
        started = time.perf_counter()
        try:
            msg = parse(payload)
        except ParseError as exc:
            self.counts["unparseable"] += 1
            return self._dialects["qie-2.3"].build_nak(payload, exc.reason).payload
        kind = f"{msg.message_type}^{msg.trigger}"
        self.received.append((kind, msg.control_id))
        self.counts[kind] += 1
        async with self._changed:
            self._changed.notify_all()
        key = (msg.sending_application, msg.sending_facility, msg.control_id)
        reply = self._replies.get(key)
        if reply is not None:
            self.duplicates += 1
            log.info("duplicate control id; answering with the original reply")
        else:
            faults = self.faults
            if faults.garbage:
                return b"THIS IS NOT HL7\r"
            if faults.nak:
                dialect = self._dialect_for(msg)
                return dialect.build_query_error(
                    request_header(msg), "simulated failure", code=AckCode(faults.nak)
                ).payload
            reply = self._answer(msg, payload).payload
            self._replies[key] = reply
        self.service_seconds.append(time.perf_counter() - started)
        self.exchanges.append((payload, reply))
        return await self._deliver(reply)

    async def _deliver(self, reply: bytes) -> bytes | None:
        faults = self.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.stall:
            await self._resume.wait()
        if self.faults.drop:
            raise _Drop("sim-ris fault: drop (reply lost with the connection)")
        if self.faults.wrong_id:
            return _foreign(reply)
        return reply

    def _on_error(self, exc: Exception, peer: object) -> bytes | None:
        return None  # close the connection (the drop fault, or a bug already logged)

    def _dialect_for(self, msg: Message) -> Dialect:
        name = _BY_TYPE.get((msg.message_type, msg.trigger))
        if name is None:
            name = "ch10-2.5.1" if msg.version.startswith("2.5") else "qie-2.3"
        return self._dialects[name]

    def _answer(self, msg: Message, payload: bytes) -> OutboundMessage:
        dialect = self._dialect_for(msg)
        kind = (msg.message_type, msg.trigger)
        if dialect.name not in self.accepted or kind not in {
            ("QRY", "Q01"),
            ("SQM", "S25"),
            ("SRM", "S01"),
            ("SRM", "S02"),
            ("SRM", "S04"),
            ("ORM", "O01"),
        }:
            return dialect.build_query_error(
                request_header(msg), "unsupported message type", code=AckCode.AR
            )
        try:
            if kind in (("SRM", "S02"), ("SRM", "S04")) or self._is_order_change(
                dialect, msg, payload
            ):
                return self._change(dialect, dialect.parse_change_request(payload))
            if kind in (("SRM", "S01"), ("ORM", "O01")):
                return self._book(dialect, payload)
            qrd = msg.first("QRD")
            if kind == ("QRY", "Q01") and qrd is not None and qrd.get(9, 1).upper() != "SOP":
                query = dialect.parse_location_query(payload)
                return dialect.build_location_response(
                    query, self.calendar.locations_for(query.modality)
                )
            slot_query = dialect.parse_slot_query(payload)
            if not self.calendar.has_location(slot_query.location_id):
                return dialect.build_query_error(slot_query.header, "unknown location")
            return self._slot_answer(dialect, slot_query)
        except ParseError as exc:
            return dialect.build_query_error(request_header(msg), exc.reason)

    def _slot_answer(self, dialect: Dialect, query: SlotQuery) -> OutboundMessage:
        """Build the answer, or re-use the one built for the same question since the last booking.

        Building a 36-slot SQR^S25 costs milliseconds in pure Python; a real RIS answers in less, and
        the benchmark should measure the daemon, not the simulator's HL7 writer. A cached answer gets the
        new request's control id (MSA-2) and query id (QAK-1, QRD-4), and its own MSH-10.
        """
        header = query.header
        key = (
            dialect.name,
            header.sender,
            header.receiver,
            query.location_id,
            query.modality,
            query.start,
            query.end,
            query.limit,
            len(self.calendar.bookings),
        )
        cached = self._slot_answers.get(key)
        if cached is not None:
            control_id, query_id, out = cached
            new_id = random_control_ids()
            payload = (
                out.payload.replace(out.control_id.encode(), new_id.encode(), 1)
                .replace(control_id.encode(), header.control_id.encode())
                .replace(f"|{query_id}|".encode(), f"|{query.query_id}|".encode())
            )
            return OutboundMessage(new_id, payload)
        slots = self.calendar.open_slots(
            query.location_id, query.modality, query.start, query.end, query.limit
        )
        out = dialect.build_slot_response(query, slots)
        if len(self._slot_answers) > 10_000:
            self._slot_answers.clear()
        self._slot_answers[key] = (header.control_id, query.query_id, out)
        return out

    def _book(self, dialect: Dialect, payload: bytes) -> OutboundMessage:
        request = dialect.parse_booking_request(payload)
        outcome = self.calendar.book(
            request.slot_id,
            placer_appointment_id=request.appointment_id,
            order_id=request.order_id,
            filler_order_id=request.filler_order_id,
            mrn=request.mrn,
            dialect=dialect.name,
        )
        if isinstance(outcome, str):
            log.info("booking rejected: %s", outcome)
            return dialect.build_booking_response(request, accepted=False, reason=outcome)
        log.info("booked slot %s as %s", outcome.slot.id, outcome.appointment_id)
        return dialect.build_booking_response(
            request, accepted=True, appointment_id=outcome.appointment_id, slot=outcome.slot
        )

    # ---- reschedule and cancel from the daemon ----------------------------------------------------------

    def _is_order_change(self, dialect: Dialect, msg: Message, payload: bytes) -> bool:
        """qie-2.3: ORC-1 CA, or XO for an appointment already booked (a first XO is a booking)."""
        if (msg.message_type, msg.trigger) != ("ORM", "O01"):
            return False
        orc = msg.first("ORC")
        control = orc.get(1).strip().upper() if orc else ""
        if control == "CA":
            return True
        if control != "XO":
            return False
        placer = dialect.parse_booking_request(payload).appointment_id
        return self.calendar.lookup(placer) is not None

    def _change(self, dialect: Dialect, request: ChangeRequest) -> OutboundMessage:
        booking = self.calendar.lookup(request.filler_appointment_id, request.appointment_id)
        if self.faults.refuse_changes:
            return dialect.build_change_response(
                request, accepted=False, reason="Exam already in progress"
            )
        if booking is None:
            return dialect.build_change_response(
                request, accepted=False, reason="unknown appointment"
            )
        if request.kind is ChangeKind.CANCEL:
            self.calendar.cancel(booking)
            log.info("cancelled %s; slot %s is open again", booking.appointment_id, booking.slot.id)
            return dialect.build_change_response(
                request,
                accepted=True,
                filler_appointment_id=booking.appointment_id,
                slot=booking.slot,
            )
        target = request.slot_id or self._slot_named(request)
        outcome = self.calendar.move(booking, target) if target else "unknown or past slot"
        if isinstance(outcome, str):
            log.info("reschedule refused: %s", outcome)
            return dialect.build_change_response(request, accepted=False, reason=outcome)
        log.info("moved %s to slot %s", outcome.appointment_id, outcome.slot.id)
        return dialect.build_change_response(
            request, accepted=True, filler_appointment_id=outcome.appointment_id, slot=outcome.slot
        )

    def _slot_named(self, request: ChangeRequest) -> str:
        """SRM^S02 names the new slot by its time, location and modality (the standard has no slot id)."""
        if request.start is None:
            return ""
        slot = self.calendar.slot_at(request.location_id, request.modality, request.start)
        return slot.id if slot is not None else ""

    # ---- acting as staff: changes made at the RIS, announced by SIU ---------------------------------------

    async def staff_cancel(self, ref: str, *, reason: str = "") -> dict[str, Any]:
        """Cancel the appointment ``ref`` (RIS id, slot id or placer id) and send SIU^S15 to ``notify``."""
        booking = self.calendar.lookup(ref)
        if booking is None:
            raise LookupError(f"no appointment {ref!r}")
        self.calendar.cancel(booking)
        return await self._announce(booking, ChangeKind.CANCEL, reason or "Cancelled by staff")

    async def staff_move(self, ref: str, slot_id: str, *, reason: str = "") -> dict[str, Any]:
        """Move the appointment ``ref`` to ``slot_id`` and send SIU^S13 to ``notify``."""
        booking = self.calendar.lookup(ref)
        if booking is None:
            raise LookupError(f"no appointment {ref!r}")
        outcome = self.calendar.move(booking, slot_id)
        if isinstance(outcome, str):
            raise ValueError(outcome)
        return await self._announce(outcome, ChangeKind.RESCHEDULE, reason or "Moved by staff")

    async def staff_noshow(self, ref: str, *, reason: str = "") -> dict[str, Any]:
        """Mark the appointment ``ref`` a no-show and send SIU^S26 to ``notify``. The calendar keeps
        the booking (the slot is in the past); sending it again sends another S26 (new MSH-10)."""
        booking = self.calendar.lookup(ref)
        if booking is None:
            raise LookupError(f"no appointment {ref!r}")
        return await self._announce(booking, None, reason or "Patient did not show")

    async def _announce(
        self, booking: Booking, kind: ChangeKind | None, reason: str
    ) -> dict[str, Any]:
        """SIU^S13/S15 of a change (``kind``), or SIU^S26 of a no-show (``None``), to ``notify``."""
        dialect = self._staff[booking.dialect or "qie-2.3"]
        slot = booking.slot
        location = next(
            (loc for loc in self.calendar.locations if loc.id == slot.location_id),
            Location(slot.location_id, "", "", ()),
        )
        appointment = Appointment(
            booking.placer_appointment_id or booking.appointment_id,
            booking.order_id,
            slot,
            location,
            filler_appointment_id=booking.appointment_id,
        )
        order = OrderRef(
            order_id=booking.order_id,
            mrn=booking.mrn,
            placer_order_id=booking.order_id,
            filler_order_id=booking.filler_order_id,
            modality=slot.modality,
        )
        out = (
            dialect.build_siu_change(
                appointment, order, receiver=self._notify_party, change=kind, reason=reason
            )
            if kind is not None
            else dialect.build_siu_no_show(
                appointment, order, receiver=self._notify_party, reason=reason
            )
        )
        action = kind.value if kind is not None else "no-show"
        result: dict[str, Any] = {
            "appointment_id": booking.appointment_id,
            "placer_appointment_id": booking.placer_appointment_id,
            "slot_id": slot.id,
            "start": slot.start.isoformat(),
            "sent": f"SIU^{kind.siu_trigger if kind is not None else 'S26'}",
            "control_id": out.control_id,
            "ack": None,
        }
        if self.notify is None:
            return result
        if self._notify_client is None:
            self._notify_client = mllp.Client(*self.notify)
        reply = await self._notify_client.request(out.payload, timeout=10.0)
        result["ack"] = read_ack(parse(reply)).code.value
        log.info("staff %s of %s announced, ACK %s", action, booking.appointment_id, result["ack"])
        return result


def _foreign(reply: bytes) -> bytes:
    """The same reply acknowledging another control id (MSA-2 prefixed with ``X``)."""
    fs = reply[3:4]
    segments = reply.split(b"\r")
    for i, segment in enumerate(segments):
        if segment.startswith(b"MSA" + fs):
            parts = segment.split(fs)
            if len(parts) > 2:
                parts[2] = b"X" + parts[2][:19]
                segments[i] = fs.join(parts)
    return b"\r".join(segments)
