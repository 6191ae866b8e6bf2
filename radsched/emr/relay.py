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

Who may relay is ``RELAY_SENDERS`` (:class:`radsched.settings.RelaySenders`): an SIU from anyone else
is answered AR before anything else happens, so it is neither forwarded nor applied to the
appointment record (the lifecycle follows an SIU only on top of this handler).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from channels import Message, ParseError, Party, parse, parse_siu, random_control_ids
from channels.siu_convert import SIU_VERSIONS, convert_siu
from radsched.emr.enqueue import Built, OutboxWriter
from radsched.emr.routes import Route
from radsched.inbound.router import (
    AckDecision,
    InboundContext,
    InboundHandler,
    Refused,
    Rejected,
)
from radsched.settings import HostPort, RelaySenders
from radsched.storage.pg import Connection

log = logging.getLogger("radsched.emr.relay")

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


#: ``ris`` in RELAY_SENDERS when RIS_ADDR is unset (simulated RIS, ``make run``): this host.
LOOPBACK = ("127.0.0.1", "::1")


async def relay_senders(
    policy: RelaySenders, ris: HostPort | None, *, exposed: bool
) -> RelaySenders:
    """``policy`` with ``ris`` resolved to the RIS's addresses, and the start-up warnings.

    ``exposed``: MLLP_LISTEN is reachable from other hosts (the warnings matter only then).
    """
    if policy.ris:
        if ris is None:
            addresses: tuple[str, ...] = LOOPBACK
            if exposed:
                log.warning(
                    "RELAY_SENDERS=ris and RIS_ADDR is unset: only this host may relay SIU to "
                    "the EMRs; set RELAY_SENDERS to the RIS's MSH-3^MSH-4@address (docs/deploy.md)"
                )
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    ris.host, None, type=socket.SOCK_STREAM
                )
                addresses = tuple(sorted({str(info[4][0]) for info in infos}))
            except OSError as exc:
                addresses = ()
                log.warning(
                    "RELAY_SENDERS=ris: RIS_ADDR host %s does not resolve (%s); SIU relay is "
                    "refused until restart, or list the RIS in RELAY_SENDERS",
                    ris.host,
                    exc,
                )
        policy = policy.with_ris(addresses)
    if policy.is_open and exposed:
        log.warning(
            "RELAY_SENDERS lets any sender that reaches MLLP_LISTEN have SIU relayed to the "
            "EMRs; list the RIS as APP^FACILITY@address (docs/deploy.md)"
        )
    elif not policy.rules:
        log.info("RELAY_SENDERS=none: SIU from the RIS is not relayed (answered AR)")
    return policy


def relay_handler(writer: OutboxWriter, senders: RelaySenders) -> InboundHandler:
    async def relay(conn: Connection, msg: Message, ctx: InboundContext) -> AckDecision:
        host = ctx.peer.host if ctx.peer is not None else None
        if not senders.allows(msg.sending_application, msg.sending_facility, host):
            raise Refused(
                "relay_sender",
                "sender not in RELAY_SENDERS: SIU not relayed",  # MSA-3 is 80 characters in v2.3
            )
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
