"""The outside peers of the chaos run that are not the RIS simulator: EMRs and the RIS's order feed.

An EMR here behaves like a real one where the daemon can tell: it parses every SIU, answers AA
echoing MSH-10, de-duplicates by MSH-10 (a repeat is answered AA again, not applied twice), and can
be switched to answer AE or AR for a while. It records every frame so the run can count what was
delivered once and what arrived again on the wire.

The order feed behaves like a RIS interface engine: one connection, one message in flight, and a
message is re-sent with the SAME MSH-10 until it is acknowledged AA (an AR, a timeout, a refused or
lost connection all mean "try again"; AE would mean "never", and is counted).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import mllp
from channels import ParseError, parse
from mllp.testing import ack_for


@dataclass
class SiuFrame:
    control_id: str
    appointment_id: str
    answered: str


@dataclass
class EmrPeer:
    """An EMR's HL7 listener (use with :class:`mllp.testing.LoopbackPeer` via :meth:`reply`)."""

    name: str
    nak: str = ""
    """'' answers AA; 'AE' or 'AR' answers that NAK without applying the message."""
    frames: list[SiuFrame] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)
    """MSH-10 -> SCH-1 of every SIU the EMR accepted (AA), first acceptance only."""
    junk: int = 0

    def reply(self, payload: bytes) -> bytes:
        try:
            msg = parse(payload)
        except ParseError:
            self.junk += 1
            return b"MSH|^~\\&|EMR|EMR|||20260101000000||ACK|X|P|2.5.1\rMSA|AR|\r"
        sch = msg.first("SCH")
        appointment = sch.get(1) if sch is not None else ""
        code = self.nak or "AA"
        self.frames.append(SiuFrame(msg.control_id, appointment, code))
        if code == "AA":
            self.applied.setdefault(msg.control_id, appointment)
        return ack_for(payload, code.encode())

    def wire_duplicates(self) -> int:
        """Frames that arrived again after their MSH-10 had already been accepted."""
        seen: set[str] = set()
        extra = 0
        for frame in self.frames:
            if frame.control_id in seen:
                extra += 1
            if frame.answered == "AA":
                seen.add(frame.control_id)
        return extra


def order_message(control_id: str, order_id: str, mrn: str, e164: str, modality: str) -> bytes:
    """An ORM^O01 NW (v2.3) as Synapse sends it; synthetic patient, phone in XTN-1 (2.3 style)."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    segments = [
        f"MSH|^~\\&|SYNAPSE|RADIOLOGY|RADSCHED|RADSCHED|20260601100000||ORM^O01|{control_id}|P|2.3",
        f"PID|1||{mrn}^^^HOSP^MR||CHAOSTEST^PATIENT||19800101|F|||||({area}){exchange}-{line}^PRN^CP",
        f"ORC|NW|{order_id}|F{order_id}",
        f"OBR|1|{order_id}|F{order_id}|71045^XR CHEST 2V^CPT||||||||||||||||||||{modality}",
    ]
    return ("\r".join(segments) + "\r").encode()


@dataclass
class Order:
    control_id: str
    order_id: str
    mrn: str
    phone: str
    modality: str
    attempts: int = 0
    ack: str = ""


def new_order(rng: random.Random, n: int, *, disabled_share: float) -> Order:
    # Numbers in the 555-01xx fictional range would collide; 217 with a 7-digit counter stays unique.
    phone = f"+1217{5000000 + n:07d}"
    modality = "MR" if rng.random() < disabled_share else "CR"
    return Order(
        control_id=f"CHAOS{n:07d}",
        order_id=f"CH{n:07d}",
        mrn=f"MRN{secrets.token_hex(4).upper()}",
        phone=phone,
        modality=modality,
    )


@dataclass
class OrderFeed:
    """Sends queued orders to the daemon's current MLLP address, in order, until each is AA'd."""

    address: Callable[[], tuple[str, int] | None]
    timeout: float = 5.0
    queue: asyncio.Queue[Order] = field(default_factory=asyncio.Queue)
    done: list[Order] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0

    def submit(self, order: Order) -> None:
        self.in_flight += 1
        self.queue.put_nowait(order)

    @property
    def idle(self) -> bool:
        return self.in_flight == 0

    async def run(self) -> None:
        client: mllp.Client | None = None
        client_addr: tuple[str, int] | None = None
        while True:
            order = await self.queue.get()
            payload = order_message(
                order.control_id, order.order_id, order.mrn, order.phone, order.modality
            )
            while True:
                addr = self.address()
                if addr is None:
                    await asyncio.sleep(0.05)  # daemon restarting: wait for its address
                    continue
                if client is None or addr != client_addr:
                    if client is not None:
                        await client.aclose()
                    client, client_addr = mllp.Client(*addr, connect_timeout=2.0), addr
                order.attempts += 1
                started = time.monotonic()
                try:
                    reply = await client.request(payload, timeout=self.timeout)
                except mllp.MLLPError as exc:
                    self.outcomes[type(exc).__name__] += 1
                    await client.aclose()
                    client = None
                    # A RIS interface engine retries after a pause, not in a tight loop.
                    await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
                    continue
                code = _ack_code(reply)
                self.outcomes[code] += 1
                if code == "AA" or code == "AE":
                    order.ack = code
                    break
                await asyncio.sleep(0.2)  # AR: resend later
            self.done.append(order)
            self.in_flight -= 1


def _ack_code(reply: bytes) -> str:
    for segment in reply.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode(errors="replace")
    return "unreadable"
