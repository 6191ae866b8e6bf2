"""Prometheus wiring for the ``mllp`` observer hooks and HL7 outcomes.

``mllp`` counts through a plain :class:`mllp.Observer`; this subclass turns those calls into metrics
labelled by peer (``listener``, ``ris``, or an EMR destination) so a dashboard can tell which side of the
daemon is in trouble.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import mllp
from mllp.observe import Role

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    15,
    30,
)


class HL7Metrics:
    """Metric families shared by every MLLP endpoint of one daemon."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.frames = Counter(
            "radsched_mllp_frames_total", "MLLP frames.", ["peer", "direction"], registry=registry
        )
        self.bytes = Counter(
            "radsched_mllp_bytes_total",
            "MLLP payload bytes.",
            ["peer", "direction"],
            registry=registry,
        )
        self.framing_errors = Counter(
            "radsched_mllp_framing_errors_total",
            "Framing errors by kind (oversize, junk, missing start block, ...).",
            ["peer", "kind"],
            registry=registry,
        )
        self.junk = Counter(
            "radsched_mllp_junk_bytes_total",
            "Bytes skipped outside frames.",
            ["peer"],
            registry=registry,
        )
        self.connections = Gauge(
            "radsched_mllp_connections", "Open MLLP connections.", ["peer"], registry=registry
        )
        self.events = Counter(
            "radsched_mllp_events_total",
            "Connection events: connect_failed, reconnect, reply_timeout, foreign_reply, idle_timeout, rejected, evicted, peer_refused, handler_error.",
            ["peer", "event"],
            registry=registry,
        )
        self.round_trip = Histogram(
            "radsched_mllp_round_trip_seconds",
            "Request to reply latency of outbound MLLP exchanges.",
            ["peer"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.inbound = Counter(
            "radsched_hl7_inbound_total",
            "Inbound HL7 messages by type and the ACK code we answered.",
            ["message_type", "ack_code"],
            registry=registry,
        )
        self.duplicates = Counter(
            "radsched_hl7_inbound_duplicates_total",
            "Inbound messages whose sender + MSH-10 was seen before (answered with the original ACK).",
            ["message_type"],
            registry=registry,
        )
        self.refused = Counter(
            "radsched_hl7_refused_total",
            "Inbound messages answered AR for their sender: relay_sender (an SIU from a sender not in "
            "RELAY_SENDERS), cancel_sender (an order cancel from another sender than the order's).",
            ["reason"],
            registry=registry,
        )
        self.exchanges = Counter(
            "radsched_hl7_exchanges_total",
            "Outbound HL7 exchanges by peer, message type and outcome (ACK code, timeout, unreachable, ...).",
            ["peer", "message_type", "outcome"],
            registry=registry,
        )
        self.exchange_seconds = Histogram(
            "radsched_hl7_exchange_seconds",
            "Outbound HL7 exchange latency by peer and message type.",
            ["peer", "message_type"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.slot_answers = Counter(
            "radsched_ris_slot_answers_total",
            "RIS slot answers by how their slots were read: memo (the same body as a recent "
            "answer, [ris] slot_memo) or parsed.",
            ["read"],
            registry=registry,
        )
        # Both children made once: this runs per slot query (radsched.metrics.labelled is a layer up).
        self._slot_read = {
            True: self.slot_answers.labels("memo"),
            False: self.slot_answers.labels("parsed"),
        }

    def slot_answer_read(self, from_memo: bool) -> None:
        """The slot memo's ``on_read``: count one answer."""
        self._slot_read[from_memo].inc()

    def observer(self, peer: str) -> PrometheusObserver:
        return PrometheusObserver(self, peer)


class PrometheusObserver(mllp.Observer):
    def __init__(self, metrics: HL7Metrics, peer: str) -> None:
        self._m = metrics
        self._peer = peer
        self._in = metrics.frames.labels(peer, "in")
        self._out = metrics.frames.labels(peer, "out")
        self._bin = metrics.bytes.labels(peer, "in")
        self._bout = metrics.bytes.labels(peer, "out")
        self._conns = metrics.connections.labels(peer)
        self._round_trip = metrics.round_trip.labels(peer)

    def frame_received(self, role: Role, size: int) -> None:
        self._in.inc()
        self._bin.inc(size)

    def frame_sent(self, role: Role, size: int) -> None:
        self._out.inc()
        self._bout.inc(size)

    def framing_error(self, role: Role, kind: str) -> None:
        self._m.framing_errors.labels(self._peer, kind).inc()

    def junk_skipped(self, role: Role, n: int) -> None:
        self._m.junk.labels(self._peer).inc(n)

    def connection_opened(self, role: Role) -> None:
        self._conns.inc()

    def connection_closed(self, role: Role) -> None:
        self._conns.dec()

    def _event(self, name: str) -> None:
        self._m.events.labels(self._peer, name).inc()

    def connection_rejected(self) -> None:
        self._event("rejected")

    def connection_evicted(self) -> None:
        self._event("evicted")

    def peer_refused(self) -> None:
        self._event("peer_refused")

    def idle_timeout(self) -> None:
        self._event("idle_timeout")

    def handler_error(self) -> None:
        self._event("handler_error")

    def connect_failed(self) -> None:
        self._event("connect_failed")

    def reconnect(self) -> None:
        self._event("reconnect")

    def reply_timeout(self) -> None:
        self._event("reply_timeout")

    def foreign_reply(self) -> None:
        self._event("foreign_reply")

    def round_trip(self, seconds: float) -> None:
        self._round_trip.observe(seconds)
