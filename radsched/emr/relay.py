"""Relay mode: SIU^S12-S15/S17/S26 from the RIS on ``MLLP_LISTEN`` forwarded to the routed EMRs.

The inbound router commits before it ACKs and answers a resend with the original ACK, so a relayed
message is enqueued exactly once, in the transaction that records it. What the EMR receives is the
RIS's message as it was, with three MSH fields changed per destination:

* MSH-5/6 become the route's receiver (the EMR checks it is the addressee);
* MSH-10 becomes a fresh control id of ours, one per destination, recorded in ``hl7_outbox`` (the
  RIS's id is kept in ``source_control_id``). Each EMR's ACK then correlates with exactly one outbox
  row, and every retry to that EMR repeats the same id so the EMR can de-duplicate;
* MSH-3/4 stay the RIS's: the appointment's source of truth is the RIS, and EMR interfaces are
  usually configured per sending facility.

The content is not rewritten otherwise. A route with ``version=`` (``EMR_ROUTES ...;version=2.7``) gets
the SIU converted field by field to that version first (``channels.siu_convert``: SCH-11 vs TQ1,
withdrawn PID fields, XTN); without it the SIU goes in the RIS's version whatever the route's dialect
(the dialect only chooses how *we* build an SIU from a booking).
"""

from __future__ import annotations

import asyncpg

from channels import Message, ParseError, Party, parse, parse_siu, random_control_ids
from channels.siu_convert import SIU_VERSIONS, convert_siu
from radsched.emr.enqueue import Built, OutboxWriter
from radsched.emr.routes import Route
from radsched.inbound.router import AckDecision, InboundContext, InboundHandler, Rejected

RELAYED = ("SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S17", "SIU^S26")


def readdress(msg: Message, receiver: Party | None, control_id: str) -> bytes:
    """The message's bytes with MSH-5/6 (when ``receiver``) and MSH-10 replaced, nothing else."""
    text = msg.text()
    end = text.index("\r")
    sep = msg.delimiters.field
    fields = text[:end].split(sep)
    # fields[0] is "MSH" and MSH-1 is the separator itself, so MSH-n is fields[n - 1].
    fields += [""] * (12 - len(fields))
    if receiver is not None:
        fields[4], fields[5] = receiver.application, receiver.facility
    fields[9] = control_id
    return (sep.join(fields) + text[end:]).encode(msg.codec, errors="replace")


def relay_handler(writer: OutboxWriter) -> InboundHandler:
    async def relay(conn: asyncpg.Connection, msg: Message, ctx: InboundContext) -> AckDecision:
        try:
            siu = parse_siu(msg, tz=writer.tz)
        except ParseError as exc:
            raise Rejected(
                exc.reason, error_code=exc.hl7_error_code, location=exc.location
            ) from None
        if not siu.placer_appointment_id and not siu.filler_appointment_id:
            raise Rejected("SCH-1 and SCH-2 are both empty: no appointment id", location="SCH-1")
        if msg.version.strip() not in SIU_VERSIONS:
            # Conversion (and what the EMRs take) covers 2.3-2.8; older SIUs are refused, not guessed.
            raise Rejected(
                f"SIU v{msg.version.strip()} is not relayed; accepted: 2.3-2.8",
                error_code="203",
                location="MSH-12",
            )

        def build(route: Route | None) -> Built:
            cid = random_control_ids()
            source = msg
            if route is not None and route.version and route.version != msg.version.strip():
                source = parse(convert_siu(msg, route.version))
            return Built(cid, readdress(source, route.receiver if route else None, cid))

        await writer.enqueue(
            conn,
            facility=msg.sending_facility or None,
            origin="relay",
            message_type=f"SIU^{siu.trigger}",
            appointment_id=siu.placer_appointment_id or siu.filler_appointment_id,
            correlation=ctx.correlation_id,
            build=build,
            source_control_id=msg.control_id,
        )
        return AckDecision()

    return relay
