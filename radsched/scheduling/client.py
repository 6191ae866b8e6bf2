"""The one persistent MLLP connection to the RIS, and what every HL7 round trip on it shares:
reply correlation (MSA-2 == our MSH-10), per-exchange metrics, and the mapping of transport and
response failures to the scheduling errors (503/504/502).

A reply that acknowledges another control id (a late answer to a request that already timed out) is
rejected by the ``correlate`` hook: ``mllp`` counts it as ``foreign_reply`` and keeps waiting. If only such
replies came, the timeout is reported as :class:`RisFailed` (the RIS is talking, but not to us), otherwise
as :class:`RisTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

import mllp
from channels import ControlIdMismatch, OutboundMessage, ParseError, ResponseError, sniff
from radsched.hl7metrics import HL7Metrics
from radsched.metrics import labelled
from radsched.scheduling.cache import Monotonic, TtlCache
from radsched.scheduling.errors import RisFailed, RisTimeout, RisUnavailable

log = logging.getLogger("radsched.ris.client")

T = TypeVar("T")
PEER = "ris"
#: How long a transport failure makes :attr:`RisClient.reachable` say False.
RECHECK_S = 15.0
#: How long /readyz reuses one probe's answer while the RIS connection is down. A probe is a TCP (and
#: TLS) handshake with the RIS; without this, anyone polling /readyz made us open one per request.
READY_CACHE_S = 2.0


def control_id_of(payload: bytes) -> bytes:
    """MSH-10 of a message we built (raw bytes, no parsing)."""
    return sniff.control_id(payload)


def acknowledged_id(reply: bytes) -> bytes | None:
    """MSA-2 of a reply, or None when the reply has no readable MSA (the parser will say why)."""
    found = sniff.msa(reply)
    return (found[1].strip() or None) if found else None


def message_type_of(payload: bytes) -> str:
    """``TYPE^TRIGGER`` from MSH-9 of a message we built, for metric labels."""
    return sniff.message_type(payload)


class RisClient:
    """Sends requests built by a dialect and returns their parsed replies, or raises a scheduling error."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        metrics: HL7Metrics,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 5.0,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._metrics = metrics
        self._exchanges = labelled(metrics.exchanges)
        self._exchange_seconds = labelled(metrics.exchange_seconds)
        self._ssl = ssl_context
        self._server_hostname = server_hostname or (host if ssl_context else None)
        self._connect_timeout = connect_timeout
        # Control ids of requests that saw a reply meant for another request.
        self._foreign: set[bytes] = set()
        # perf_counter() of the last transport failure (unreachable, lost, timed out), or None.
        self._failed_at: float | None = None
        # One probe at a time, its answer kept READY_CACHE_S (a tuple: the healthy answer is None).
        self._probes: TtlCache[str, tuple[str | None]] = TtlCache(
            READY_CACHE_S, monotonic=monotonic
        )
        self._client = mllp.Client(
            host,
            port,
            ssl=ssl_context,
            server_hostname=self._server_hostname,
            connect_timeout=connect_timeout,
            # A RIS restart should not keep bookings failing fast for long.
            backoff_initial=0.1,
            backoff_max=5.0,
            observer=metrics.observer(PEER),
            correlate=self._correlate,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _correlate(self, request: bytes, reply: bytes) -> bool:
        acked = acknowledged_id(reply)
        if acked is None:
            return True  # unreadable: hand it to the parser, which reports it (502)
        expected = control_id_of(request)
        if acked == expected:
            return True
        self._foreign.add(expected)
        log.warning(
            "discarding a RIS reply for another request",
            extra={"control_id": expected.decode("ascii", "replace")},
        )
        return False

    async def exchange(
        self,
        out: OutboundMessage,
        parse: Callable[[bytes, str], T],
        outcome: Callable[[T], str] = lambda _: "AA",
    ) -> T:
        """One round trip: send ``out``, read the reply with ``parse(reply, control_id)``."""
        message_type = message_type_of(out.payload)
        cid = out.control_id.encode()
        started = time.perf_counter()
        result_label = "error"
        try:
            try:
                reply = await self._client.request(out.payload, timeout=self.timeout)
            except mllp.ConnectError:
                result_label = "unreachable"
                raise RisUnavailable(f"the RIS at {self.address} is unreachable") from None
            except mllp.ReplyTimeout:
                if cid in self._foreign:
                    result_label = "foreign_reply"
                    raise RisFailed(
                        f"the RIS answered only other requests' control ids (ours: {out.control_id})"
                    ) from None
                result_label = "timeout"
                raise RisTimeout(
                    f"the RIS did not answer {out.control_id} within {self.timeout:g} s"
                ) from None
            except (mllp.ConnectionLost, mllp.ClientClosed):
                result_label = "connection_lost"
                raise RisUnavailable(
                    f"the RIS at {self.address} closed the connection before answering"
                ) from None
            except mllp.MLLPError as exc:
                result_label = "transport_error"
                raise RisFailed(f"MLLP error from the RIS: {exc}") from None
            try:
                result = parse(reply, out.control_id)
            except ResponseError as exc:
                result_label = exc.code
                raise RisFailed(
                    f"the RIS answered {out.control_id} with {exc.code}"
                    + (f": {exc.reason}" if exc.reason else "")
                ) from None
            except (ParseError, ControlIdMismatch) as exc:
                result_label = "unparseable"
                raise RisFailed(f"unreadable RIS reply to {out.control_id}: {exc}") from None
            result_label = outcome(result)
            return result
        finally:
            self._foreign.discard(cid)
            if result_label in ("unreachable", "connection_lost", "timeout"):
                self._failed_at = time.perf_counter()
                # A probe's "reachable" from before this failure no longer stands.
                self._probes.invalidate()
            elif result_label != "error":
                self._failed_at = None  # the RIS answered (whatever it said)
            elapsed = time.perf_counter() - started
            self._exchanges(PEER, message_type, result_label).inc()
            self._exchange_seconds(PEER, message_type).observe(elapsed)
            log.debug(
                "RIS exchange",
                extra={
                    "control_id": out.control_id,
                    "message_type": message_type,
                    "outcome": result_label,
                    "ms": round(elapsed * 1000, 2),
                },
            )

    @property
    def reachable(self) -> bool:
        """False for ``RECHECK_S`` after a transport failure, so callers (the SMS engine) can hand an
        order to staff at once instead of waiting for another timeout; afterwards the next real call
        finds out again."""
        failed = self._failed_at
        return failed is None or time.perf_counter() - failed > RECHECK_S

    async def ready(self) -> str | None:
        """Readiness: None when the RIS accepts connections, else a reason (no PHI).

        Connected: no probe. Otherwise concurrent callers share one probe connection, and its
        answer stands for ``READY_CACHE_S``.
        """
        if self._client.connected:
            return None
        (reason,) = await self._probes.get("ris", self._probe)
        return reason

    async def _probe(self) -> tuple[str | None]:
        try:
            async with asyncio.timeout(min(2.0, self._connect_timeout)):
                _, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self._ssl, server_hostname=self._server_hostname
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            return (f"RIS {self.address} unreachable ({reason})",)
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
        self._failed_at = None
        return (None,)

    async def aclose(self) -> None:
        await self._client.aclose()
