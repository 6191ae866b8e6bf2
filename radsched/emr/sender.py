"""The sender of one EMR destination: drains its queue in FIFO order over one MLLP connection.

Only the daemon holding the destination's advisory lock sends (see :mod:`radsched.storage.destination_locks`),
so messages leave in id order even with several daemons on one database. The head of the queue blocks
the rest: a message is retried until it is delivered or dead-lettered, and only then does the next go.

Outcomes of one exchange:

* AA / CA — delivered: the body is deleted, the metadata (control id, times, ACK code) stays;
* AE / CE — the EMR refused the content: retried ``max_rejections`` times (it may be a transient
  application error on their side), then dead-lettered with the reason and the queue moves on;
* AR / CR, connect failure, reply timeout, connection lost, an unreadable ACK — retried indefinitely
  with exponential backoff and jitter; the queue waits (the oldest-age metric shows it).

Every attempt sends the same bytes, hence the same MSH-10, so an EMR that saw an earlier attempt
de-duplicates. Delivered rows are written back in small batches (``flush_every``); a crash in that
window re-sends at most one batch, with the same MSH-10s: delivery is at least once, never "maybe".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import mllp
from channels import AckCode, ParseError, parse, read_ack, sniff
from radsched.emr.enqueue import open_body
from radsched.emr.metrics import EmrMetrics
from radsched.emr.routes import Destination, tls_context
from radsched.hl7metrics import HL7Metrics
from radsched.logs import correlated
from radsched.privacy import PhiBox, PhiBoxError
from radsched.storage import emr_outbox as store
from radsched.storage.db import Database
from radsched.storage.destination_locks import Coordinator
from radsched.tasks import spawn

log = logging.getLogger("radsched.emr.sender")


@dataclass(frozen=True, slots=True)
class EmrSenderConfig:
    ack_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_rejections: int = 3
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    batch: int = 100
    flush_every: int = 25
    """Delivered rows are written back this many at a time: after a crash at most this many are
    re-sent (same MSH-10), and one UPDATE per batch keeps a fast EMR from waiting on the database."""
    sweep_s: float = 30.0
    """Safety sweep when idle, in case a NOTIFY was missed (e.g. while the session reconnected)."""
    takeover_s: float = 1.0
    """How often a daemon that does not hold a destination's lock tries to take it."""


@dataclass(frozen=True, slots=True)
class _Result:
    delivered: bool
    outcome: str
    """ACK code, or unreachable / timeout / connection_lost / bad_ack / undecryptable."""
    detail: str = ""
    ack_code: str | None = None


_DIGITS = re.compile(r"\d{3,}")


def scrub(text: str, limit: int = 160) -> str:
    """An EMR's error text made safe to store in a clear column: runs of digits (MRN, DOB, phone)
    masked, whitespace collapsed, length capped. EMRs do echo identifiers in MSA-3."""
    return " ".join(_DIGITS.sub("#", text).split())[:limit]


def _msa_code(reply: bytes) -> bytes:
    """MSA-1 read from the raw reply (the client's ``correlate`` already matched MSA-2)."""
    found = sniff.msa(reply)
    return found[0] if found else b""


# The common case needs no full parse: a positive ACK whose MSA-2 the client already checked.
_ACCEPTED = {
    b"AA": _Result(True, "AA", ack_code="AA"),
    b"CA": _Result(True, "CA", ack_code="CA"),
}


class DestinationSender:
    def __init__(
        self,
        destination: Destination,
        *,
        db: Database,
        coordinator: Coordinator,
        phi: PhiBox,
        metrics: EmrMetrics,
        hl7_metrics: HL7Metrics,
        config: EmrSenderConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self.destination = destination
        self.name = destination.name
        self._db = db
        self._coordinator = coordinator
        self._phi = phi
        self._metrics = metrics
        self._hl7 = hl7_metrics
        self._peer = f"emr:{destination.name}"
        self._cfg = config
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._failures = 0
        self.failing_since: float | None = None
        """Monotonic time of the first failure since the last success (None while healthy)."""
        self.last_failure = ""
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._delivered = metrics.delivered.labels(destination.name)
        self._last_success = metrics.last_success.labels(destination.name)
        tls = tls_context(destination)
        self._client = mllp.Client(
            destination.address.host,
            destination.address.port,
            ssl=tls,
            server_hostname=destination.server_name if tls else None,
            connect_timeout=config.connect_timeout_s,
            # The outbox owns the retry schedule; the client must not add a second backoff.
            backoff_initial=0.0,
            backoff_max=0.0,
            observer=hl7_metrics.observer(self._peer),
            correlate=sniff.acknowledges,  # MSA-2 of the reply is our MSH-10
        )
        metrics.destination(self.name)
        metrics.failing_seconds.labels(self.name).set_function(self.failing_for)

    def failing_for(self) -> float:
        since = self.failing_since
        return 0.0 if since is None else time.monotonic() - since

    def wake(self) -> None:
        self._wake.set()

    async def _wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._wake.wait()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            fence = await self._coordinator.try_lock(self.name)
            if fence is None:
                await self._wait(self._cfg.takeover_s)
                continue
            self._metrics.draining.labels(self.name).set(1)
            log.info("draining EMR destination", extra={"destination": self.name})
            try:
                await self._drain(fence)
            except Exception:
                # A database hiccup must not kill the sender: back off and take the lock again.
                log.exception("EMR sender failed; retrying", extra={"destination": self.name})
                await self._wait(self._cfg.retry_initial_s)
            finally:
                self._metrics.draining.labels(self.name).set(0)
                if not self._coordinator.holds(self.name):
                    self.failing_since = None  # no longer ours to judge

    async def _drain(self, fence: store.LockFence) -> None:
        while not self._stopping and self._coordinator.holds(self.name):
            self._wake.clear()
            async with self._db.transaction("emr.claim") as conn:
                if not await store.holds_lock(conn, fence):
                    log.warning("destination lock lost", extra={"destination": self.name})
                    self._coordinator.forget(self.name)  # ask PostgreSQL again next time
                    return
                rows = await store.claim(conn, self.name, self._cfg.batch)
            if not rows:
                await self._wait(self._cfg.sweep_s)
                continue
            wait = (rows[0].next_attempt_at - self._clock()).total_seconds()
            if wait > 0:
                await self._wait(min(wait, self._cfg.sweep_s))
                continue
            await self._send(rows)

    async def _send(self, rows: list[store.Claimed]) -> None:
        delivered: list[tuple[int, str, datetime]] = []
        # The write-back of one batch overlaps the exchanges of the next (it touches other rows).
        writing: asyncio.Task[None] | None = None
        try:
            for row in rows:
                if self._stopping or not self._coordinator.holds(self.name):
                    return
                with correlated(row.correlation_id):
                    result = await self._exchange(row)
                    if result.delivered:
                        delivered.append((row.id, result.ack_code or "AA", self._clock()))
                        self._succeeded()
                        if len(delivered) >= self._cfg.flush_every:
                            if writing is not None:
                                await writing
                            writing = spawn(self._flush(delivered), name="emr-flush", awaited=True)
                            delivered = []
                        continue
                    if writing is not None:
                        await writing
                        writing = None
                    await self._flush(delivered)
                    delivered = []
                    await self._settle(row, result)
                return
        finally:
            if writing is not None:
                await writing
            await self._flush(delivered)

    async def _flush(self, delivered: list[tuple[int, str, datetime]]) -> None:
        if delivered:
            async with self._db.transaction("emr.delivered") as conn:
                await store.mark_delivered(conn, delivered)

    def _succeeded(self) -> None:
        self._failures = 0
        self.failing_since = None
        self._delivered.inc()
        self._last_success.set(self._clock().timestamp())

    async def _exchange(self, row: store.Claimed) -> _Result:
        if row.payload is None:
            return _Result(False, "undecryptable", "the message body is missing")
        try:
            body = open_body(self._phi, self.name, row.control_id, row.payload)
        except PhiBoxError:
            return _Result(False, "undecryptable", "cannot open the sealed body (PHI_KEY changed?)")
        started = time.perf_counter()
        try:
            reply = await self._client.request(body, timeout=self._cfg.ack_timeout_s)
        except mllp.ConnectError:
            result = _Result(False, "unreachable", f"cannot connect to {self.destination.address}")
        except mllp.ReplyTimeout:
            result = _Result(False, "timeout", f"no ACK within {self._cfg.ack_timeout_s:g} s")
        except mllp.MLLPError as exc:
            result = _Result(False, "connection_lost", type(exc).__name__)
        else:
            result = _ACCEPTED.get(_msa_code(reply)) or self._read(reply)
        self._counted(row.message_type, result.outcome, time.perf_counter() - started)
        return result

    def _counted(self, message_type: str, outcome: str, seconds: float) -> None:
        # Label look-ups cost more than the increments; a destination sees few distinct pairs.
        key = (message_type, outcome)
        children = self._children.get(key)
        if children is None:
            children = (
                self._hl7.exchanges.labels(self._peer, message_type, outcome),
                self._hl7.exchange_seconds.labels(self._peer, message_type),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    @staticmethod
    def _read(reply: bytes) -> _Result:
        try:
            ack = read_ack(parse(reply))
        except ParseError as exc:
            return _Result(False, "bad_ack", f"unreadable ACK: {exc.reason}")
        code = ack.code
        if code.is_success:
            return _Result(True, str(code), ack_code=str(code))
        detail = scrub(ack.text) + (f" (ERR {ack.error_code})" if ack.error_code else "")
        return _Result(False, str(code), detail, ack_code=str(code))

    async def _settle(self, row: store.Claimed, result: _Result) -> None:
        now = self._clock()
        extra = {
            "destination": self.name,
            "control_id": row.control_id,
            "appointment_id": row.appointment_id,
            "outcome": result.outcome,
        }
        if result.outcome == "undecryptable":
            async with self._db.transaction("emr.dead_letter") as conn:
                await store.dead_letter(conn, row.id, reason=result.detail, now=now)
            self._metrics.dead_lettered.labels(self.name, "undecryptable").inc()
            log.error("SIU dead-lettered: body cannot be read", extra=extra)
            return
        if result.outcome in (AckCode.AE, AckCode.CE):
            rejections = row.rejections + 1
            reason = f"{result.outcome} from the EMR: {result.detail or 'no reason given'}"
            if rejections >= self._cfg.max_rejections:
                async with self._db.transaction("emr.dead_letter") as conn:
                    await store.dead_letter(
                        conn,
                        row.id,
                        reason=f"rejected {rejections} times; last: {reason}",
                        now=now,
                        ack_code=result.ack_code,
                        rejected=True,
                    )
                self._metrics.dead_lettered.labels(self.name, "ae").inc()
                log.error("SIU dead-lettered after repeated AE", extra=extra)
                return
            delay = self._backoff(rejections)
            async with self._db.transaction("emr.retry") as conn:
                await store.record_failure(
                    conn,
                    row.id,
                    error=reason,
                    next_attempt_at=now + timedelta(seconds=delay),
                    ack_code=result.ack_code,
                    rejected=True,
                )
            self._metrics.retries.labels(self.name, "ae").inc()
            log.warning(
                "SIU rejected by the EMR; will retry",
                extra={**extra, "retry_in_s": round(delay, 3)},
            )
            return
        # AR/CR and transport failures: the EMR is not taking messages right now; wait for it.
        self._failures += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_failure = (
            f"{result.outcome}: {result.detail}" if result.detail else result.outcome
        )
        delay = self._backoff(self._failures)
        async with self._db.transaction("emr.retry") as conn:
            await store.record_failure(
                conn,
                row.id,
                error=self.last_failure,
                next_attempt_at=now + timedelta(seconds=delay),
                ack_code=result.ack_code,
                rejected=False,
            )
        reason = "ar" if result.outcome in (AckCode.AR, AckCode.CR) else result.outcome
        self._metrics.retries.labels(self.name, reason).inc()
        log.warning(
            "SIU delivery failed; will retry", extra={**extra, "retry_in_s": round(delay, 3)}
        )

    def _backoff(self, failures: int) -> float:
        """Doubling from ``retry_initial_s`` up to ``retry_max_s``, "equal jitter" (half fixed, half
        random) so several destinations, or daemons, do not retry in lock-step."""
        base = min(self._cfg.retry_max_s, self._cfg.retry_initial_s * 2.0 ** max(0, failures - 1))
        return base / 2 + random.uniform(0, base / 2)

    def stop(self) -> None:
        """Stop after the exchange in flight; the owner bounds the wait and cancels after the grace."""
        self._stopping = True
        self._wake.set()

    async def aclose(self) -> None:
        await self._client.aclose()
