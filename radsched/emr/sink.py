"""The in-process EMR sink: where SIUs go when ``EMR_ROUTES`` is unset (``make run``, demos).

An MLLP server on 127.0.0.1, port 0, that acknowledges every message with AA and logs one line per
message: control id, trigger and appointment id, never the patient. It goes through the same outbox,
sender and metrics as a real EMR, so a demo exercises the real path.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo

import mllp
from channels import AckCode, ParseError, Party, build_ack, build_nak, parse
from radsched.hl7metrics import HL7Metrics
from radsched.settings import HostPort

log = logging.getLogger("radsched.emr.sink")

SINK_PARTY = Party("EMRSINK", "RADSCHED")


@dataclass(frozen=True, slots=True)
class SinkRecord:
    control_id: str
    trigger: str
    appointment_id: str


class EmrSink:
    def __init__(
        self, hl7_metrics: HL7Metrics, *, tz: tzinfo, clock: Callable[[], datetime]
    ) -> None:
        self._metrics = hl7_metrics
        self._tz = tz
        self._clock = clock
        self._server: mllp.Server | None = None
        self.received: deque[SinkRecord] = deque(maxlen=10_000)
        """The latest messages received (metadata only), for tests and ``make run`` demos."""

    @property
    def address(self) -> HostPort:
        assert self._server is not None
        return HostPort(self._server.host, self._server.port)

    async def start(self) -> None:
        self._server = await mllp.start_server(
            self._handle, "127.0.0.1", 0, observer=self._metrics.observer("emr-sink")
        )

    async def _handle(self, frame: bytes, peer: mllp.PeerInfo | None) -> bytes:
        try:
            msg = parse(frame)
        except ParseError as exc:
            return build_nak(
                frame, exc.reason, sender=SINK_PARTY, clock=self._clock, tz=self._tz
            ).payload
        sch = msg.first("SCH")
        record = SinkRecord(msg.control_id, msg.trigger, sch.get(1) if sch else "")
        self.received.append(record)
        log.info(
            "EMR sink received",
            extra={
                "control_id": record.control_id,
                "trigger": f"{msg.message_type}^{msg.trigger}",
                "appointment_id": record.appointment_id,
            },
        )
        return build_ack(msg, AckCode.AA, sender=SINK_PARTY, clock=self._clock, tz=self._tz).payload

    async def aclose(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.aclose(grace)
