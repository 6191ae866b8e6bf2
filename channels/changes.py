"""The appointment lifecycle after the booking: reschedule, modify, cancel, delete.

Trigger numbering is the standard's (HL7 v2 chapter 10), not that of some reference sites that swap S13 and
S15 (reference/next.md 1.1):

=================  ==============  ===================  ==========================================
change             request (us)    notification (SIU)   from the RIS as an order (qie-2.3 sites)
=================  ==============  ===================  ==========================================
reschedule         SRM^S02         SIU^S13              ORM^O01 ORC-1 ``XO`` with a new time
modify             (SRM^S03)       SIU^S14              —
cancel             SRM^S04         SIU^S15              ORM^O01 ORC-1 ``CA``/``OC``/``DC``
delete             (SRM^S06)       SIU^S17              —
=================  ==============  ===================  ==========================================

An *order* cancel (ORC-1 ``CA``) is the placer asking the filler not to do the service; the filler answers
``CR`` (cancelled as requested) or ``UC`` (unable to cancel). ``qie-2.3`` uses it as the appointment cancel
because that dialect books through ORM too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from .model import AckCode, Order, RequestHeader, SiuMessage


class ChangeKind(enum.StrEnum):
    RESCHEDULE = "reschedule"
    MODIFY = "modify"
    CANCEL = "cancel"
    DELETE = "delete"

    @property
    def siu_trigger(self) -> str:
        """The SIU event that notifies this change to EMRs."""
        return _SIU_TRIGGER[self]

    @property
    def status(self) -> str:
        """The appointment status after this change (``modify`` keeps the appointment booked)."""
        return _STATUS[self]


_SIU_TRIGGER = {
    ChangeKind.RESCHEDULE: "S13",
    ChangeKind.MODIFY: "S14",
    ChangeKind.CANCEL: "S15",
    ChangeKind.DELETE: "S17",
}
_STATUS = {
    ChangeKind.RESCHEDULE: "rescheduled",
    ChangeKind.MODIFY: "booked",
    ChangeKind.CANCEL: "cancelled",
    ChangeKind.DELETE: "deleted",
}
SIU_CHANGES: dict[str, ChangeKind] = {t: k for k, t in _SIU_TRIGGER.items()}
"""SIU trigger -> change (S12 and S26 are not changes of a known appointment; see :func:`is_no_show`)."""

REQUEST_TRIGGERS: dict[ChangeKind, str] = {ChangeKind.RESCHEDULE: "S02", ChangeKind.CANCEL: "S04"}
"""SRM trigger of the requests we send (ch10-2.5.1)."""

ORDER_CANCEL_CONTROLS = frozenset({"CA", "OC", "DC"})
"""ORC-1 values from the RIS that cancel the appointment booked for the order (CA placer cancel echoed,
OC cancelled by the filler, DC discontinued)."""

# SCH-6 event reason and SCH-25 filler status (table 0278) of each SIU we send.
SIU_EVENTS: dict[str, tuple[tuple[str, str, str], str]] = {
    "S12": (("NEW", "New appointment", "L"), "Booked"),
    "S13": (("RESCHED", "Rescheduled", "L"), "Booked"),
    "S14": (("MODIFY", "Modified", "L"), "Booked"),
    "S15": (("CANCEL", "Cancelled", "L"), "Cancelled"),
    "S17": (("DELETE", "Entered in error", "L"), "Deleted"),
    "S26": (("NOSHOW", "Patient did not show", "L"), "Noshow"),
}

#: SCH-6 of the SIU^S14 that tells the EMRs the patient confirmed (a reply "1" to a text, when the site
#: turns it on). Table 0278 (SCH-25) has no "Confirmed": the appointment stays ``Booked`` and the
#: confirmation is the event reason, a local code (SCH-6 is a user-defined table).
CONFIRMED_EVENT = ("CONFIRMED", "Confirmed by the patient", "L")

NO_SHOW_STATUS = "noshow"
"""SCH-25 (table 0278, v2.5) of an appointment the patient did not come to, compared case-blind."""


def change_of_siu(siu: SiuMessage) -> ChangeKind | None:
    """What an SIU from the RIS does to a known appointment (``None`` for S12/S26)."""
    return SIU_CHANGES.get(siu.trigger)


def is_no_show(siu: SiuMessage) -> bool:
    """The RIS says the patient did not come: SIU^S26, or an S14 whose SCH-25 filler status is
    ``Noshow`` (RISes that only send S12-S15 mark it so). Not a change: the appointment stays as it was."""
    if siu.trigger == "S26":
        return True
    return siu.trigger == "S14" and siu.filler_status.strip().lower() == NO_SHOW_STATUS


def change_of_order(order: Order) -> ChangeKind | None:
    """What an ORM from the RIS does to the appointment booked for its order.

    ``CA``/``OC``/``DC`` cancel it; ``XO`` with a scheduled time moves it; anything else (``NW``, ``SC``, a
    ``CR``/``UC`` answer, an ``XO`` without a time) changes nothing.
    """
    if order.order_control in ORDER_CANCEL_CONTROLS:
        return ChangeKind.CANCEL
    if order.order_control == "XO" and order.scheduled_start is not None:
        return ChangeKind.RESCHEDULE
    return None


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """A reschedule or cancel request as the RIS reads it (the simulated RIS, tests).

    ``qie-2.3`` books and reschedules with the same ``ORM^O01 XO``: its parser reports ``XO`` as a reschedule
    and the RIS tells the two apart by whether it already holds ``appointment_id``.
    """

    header: RequestHeader
    kind: ChangeKind
    appointment_id: str
    """Ours (placer): ARQ-1 / OBR-18."""
    filler_appointment_id: str
    """The RIS's id of the existing appointment: ARQ-2 (ch10); the slot id in OBR-20 (qie-2.3)."""
    order_id: str
    filler_order_id: str
    slot_id: str
    """The new slot of a reschedule when the site carries one (qie-2.3 OBR-20), else ``""``."""
    location_id: str
    modality: str
    start: datetime | None
    """The new start of a reschedule (ARQ-11.1 / AIS-4 / ORC-7.4); the booked start of a cancel, if sent."""
    duration_minutes: int | None
    reason: str
    """ARQ-6 / ORC-16 text (else code); ``""`` when none was given."""
    mrn: str = ""


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """The RIS's answer to a reschedule or cancel.

    ``accepted`` only for MSA-1 ``AA`` *and* no refusing order control (``UC`` unable to cancel, ``UX`` unable
    to change) in an ORR. A refusal is not an exception: the daemon answers 409 with :attr:`reason`.
    """

    accepted: bool
    ack_code: AckCode
    order_control: str
    """ORC-1 of an ORR^O02 answer (``CR``, ``UC``, ``XR``, ``UX``), ``""`` otherwise."""
    filler_appointment_id: str
    """SCH-2 of an SRR (placement ``booking_response.appointment_id``) when the RIS returned one."""
    reason: str
    error_code: str = ""
