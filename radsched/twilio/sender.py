"""The SMS outbox sender: claims due texts, sends each once, records the outcome.

One task per daemon. It wakes on ``wake()`` (same process, after a commit), on a PostgreSQL
``NOTIFY`` (any daemon sharing the database) and on a timer: the next retry that falls due, or the
safety sweep. Retries (5xx, 429, network failures before the request left) are the outbox's, with
exponential backoff and jitter and a bounded number of attempts; the provider never retries.

The sender's dedicated LISTEN connection doubles as its identity: rows it claims carry that
session's ``pid@backend_start``. When a daemon dies mid-send its session disappears, and the next
sweep of any daemon declares its 'sending' rows ambiguous instead of sending them again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from radsched.logs import correlated
from radsched.privacy import PhiBox, PhiBoxError
from radsched.storage import sms_outbox as store
from radsched.storage.db import Database
from radsched.storage.pg import Connection, InterfaceError, PostgresError
from radsched.tasks import spawn
from radsched.twilio.providers import (
    ENGINE_CODES,
    ErrorClass,
    OutboundText,
    SendError,
    SmsProvider,
)

# Logger names are kept from before the move to radsched/twilio: operators filter on them.
log = logging.getLogger("radsched.sms.sender")

MAX_VALIDITY_S = 36_000  # Twilio's maximum (and default) ValidityPeriod
DB_ERRORS = (OSError, PostgresError, InterfaceError, TimeoutError)
STATS_EVERY_S = 1.0  # backlog gauges are refreshed at most this often


class DeliveryFailureSink(Protocol):
    async def on_delivery_failure(
        self, phone_hash: str, error_code: int, correlation_id: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 2.0
    cap_s: float = 600.0
    max_attempts: int = 10

    def delay(self, attempts: int) -> float:
        """'Equal jitter': half the exponential step fixed, half random, so a burst of failures
        (a Twilio outage) does not come back as a burst of retries."""
        step = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return step / 2 + random.uniform(0, step / 2)


@dataclass(frozen=True, slots=True)
class SmsSenderConfig:
    batch: int = 16  # texts in flight at once (Twilio's API concurrency limit is far higher)
    sweep_s: float = 30.0  # safety sweep: claims missed wake-ups, recovers interrupted sends
    lease_s: float = 600.0  # a 'sending' row older than this is ambiguous even if its session lives
    listen_retry_s: float = 5.0


class SmsMetrics:
    """Prometheus families of the SMS transport (outbox and webhooks). Labels are bounded: template
    ids come from the catalogue, error classes from ``ErrorClass``; never a number or a sid."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.sent = Counter(
            "radsched_sms_sent", "Texts accepted by the provider.", ["template"], registry=registry
        )
        self.failed = Counter(
            "radsched_sms_failed",
            "Texts that failed for good (opted out, invalid number, ambiguous, undelivered).",
            ["template", "error_class"],
            registry=registry,
        )
        self.dead = Counter(
            "radsched_sms_dead",
            "Texts dead-lettered (rejected, expired, attempts exhausted).",
            ["template", "error_class"],
            registry=registry,
        )
        self.retried = Counter(
            "radsched_sms_retries",
            "Send attempts that will be retried.",
            ["template", "error_class"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "radsched_sms_send_seconds",
            "Provider API call duration.",
            ["provider", "outcome"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
        )
        self.queue_depth = Gauge(
            "radsched_sms_outbox_depth", "Texts pending or being sent.", registry=registry
        )
        self.oldest_age = Gauge(
            "radsched_sms_outbox_oldest_seconds",
            "Age of the oldest text pending or being sent (0 when empty).",
            registry=registry,
        )
        self.webhooks = Counter(
            "radsched_sms_webhooks",
            "Twilio webhooks by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.statuses = Counter(
            "radsched_sms_status_callbacks",
            "Status callbacks by MessageStatus.",
            ["status"],
            registry=registry,
        )
        self.engine_notified = Counter(
            "radsched_sms_delivery_failures_reported",
            "Delivery failures reported to the SMS engine, by outcome.",
            ["error_class", "outcome"],
            registry=registry,
        )


class OutboxSender:
    def __init__(
        self,
        *,
        db: Database,
        dsn: str,
        phi: PhiBox,
        provider: SmsProvider,
        metrics: SmsMetrics,
        clock: Callable[[], datetime],
        status_callback_base: str | None,
        engine: Callable[[], DeliveryFailureSink | None],
        policy: RetryPolicy | None = None,
        config: SmsSenderConfig | None = None,
    ) -> None:
        self._db = db
        self._phi = phi
        self.provider = provider
        self._metrics = metrics
        self._clock = clock
        self._callback_base = status_callback_base
        self._engine = engine
        self.policy = policy or RetryPolicy()
        self.config = config or SmsSenderConfig()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # The sender's own connection: LISTEN, identity (claims carry its pid@backend_start) and
        # every claim/outcome statement, one at a time (see DedicatedConnection for why).
        self._anchor = store.DedicatedConnection(
            dsn, name="radsched-sms-sender", channel=store.NOTIFY_CHANNEL, on_notify=self._on_notify
        )
        self.identity = ""
        self._idle = asyncio.Event()
        # When the next retry falls due: ours are tracked as we schedule them; the backlog query
        # (at most every STATS_EVERY_S) adds other daemons' and earlier lives'.
        self._earliest_retry: datetime | None = None
        self._next_due: datetime | None = None
        self._stats_at = float("-inf")

    # --- lifecycle ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def start(self) -> None:
        try:
            await self._connect_listener()
            await self._recover()
        except BaseException:
            await self._close_listener()
            await self.provider.aclose()
            raise
        self._task = spawn(self._run(), name="sms-outbox-sender")

    async def aclose(self, grace: float) -> None:
        """Stop claiming; let in-flight sends finish within ``grace``; then cancel."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace)
            if not done:
                log.warning("sms sender did not finish within the grace; cancelling")
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task
        await self._close_listener()
        await self.provider.aclose()

    async def wait_idle(self, timeout: float) -> None:
        """For tests and benchmarks: until the sender found nothing due after the last wake."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def _connect_listener(self) -> None:
        conn = await self._anchor.open()
        try:
            self.identity = await store.session_identity(conn)
        except BaseException:
            await self._anchor.close()
            raise

    async def _close_listener(self) -> None:
        await self._anchor.close()

    def _on_notify(self, _payload: str) -> None:
        self.wake()

    def _conn(self) -> AbstractAsyncContextManager[Connection]:
        # Never reopened behind our back: a new session is a new identity (see _run).
        return self._anchor.use(reconnect=False)

    # --- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            timeout = self.config.sweep_s
            try:
                if not self._anchor.is_open:
                    await self._close_listener()
                    await self._connect_listener()
                    await self._recover()
                await self._drain()
                timeout = await self._next_wait()
            except DB_ERRORS as exc:
                # Database trouble: the rows are safe where they are; try again shortly.
                log.warning("sms sender: database unavailable", extra={"error": type(exc).__name__})
                timeout = self.config.listen_retry_s
            except Exception:
                # A bug must not stop every text for good: log it, pause, carry on. Rows it left
                # in 'sending' are resolved by the lease (ambiguous), never re-sent.
                log.exception("sms sender: unexpected error; continuing")
                timeout = self.config.listen_retry_s
            if self._stopping:
                break
            if not self._wake.is_set():
                self._idle.set()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if not self._wake.is_set():  # the timer fired: a sweep
                with suppress(*DB_ERRORS):
                    await self._recover()
                    await self._next_wait(refresh=True)

    async def _next_wait(self, *, refresh: bool = False) -> float:
        """Seconds until the next retry falls due (at most the sweep interval); updates the
        backlog gauges, throttled so that a busy sender does not query them after every text."""
        now = self._clock()
        loop_now = asyncio.get_running_loop().time()
        if refresh or loop_now - self._stats_at >= STATS_EVERY_S:
            self._stats_at = loop_now
            async with self._conn() as conn:
                depth, oldest, self._next_due = await store.backlog(conn)
            self._metrics.queue_depth.set(depth)
            self._metrics.oldest_age.set((now - oldest).total_seconds() if oldest else 0)
        dues = [d for d in (self._next_due, self._earliest_retry) if d is not None]
        if not dues:
            return self.config.sweep_s
        return min(self.config.sweep_s, max(0.01, (min(dues) - now).total_seconds()))

    async def _recover(self) -> None:
        async with self._db.transaction("sms_outbox_recover") as conn:
            lost = await store.recover_interrupted(
                conn, now=self._clock(), lease_s=self.config.lease_s
            )
        for template in lost:
            self._metrics.failed.labels(template, ErrorClass.AMBIGUOUS.value).inc()
        if lost:
            log.warning("texts interrupted mid-send marked ambiguous", extra={"count": len(lost)})

    async def _drain(self) -> None:
        # Whatever was due is claimed now; retries scheduled during this drain re-arm the timer.
        self._earliest_retry = self._next_due = None
        while not self._stopping:
            # The claim is committed (durably) before any of these texts is sent.
            async with self._conn() as conn:
                claimed = await store.claim_due(
                    conn, now=self._clock(), limit=self.config.batch, claimed_by=self.identity
                )
            if not claimed:
                return
            # The whole batch finishes before the next claim; shutdown waits for it (the grace).
            await asyncio.gather(*(self._send_one(text) for text in claimed))
            if len(claimed) < self.config.batch and not self._wake.is_set():
                # Nothing else was due at claim time, and nothing was queued since (a commit
                # would have woken us): skip the empty claim.
                return

    # --- one text ----------------------------------------------------------------------------

    async def _send_one(self, text: store.ClaimedText) -> None:
        with correlated(text.correlation_id):
            try:
                await self._attempt(text)
            except Exception:
                # The outcome could not be recorded (database trouble, or a bug); the row stays
                # 'sending' under our identity and the lease turns it ambiguous: a text is never
                # sent twice because of our own failure. One text's failure stays its own.
                log.exception(
                    "sms outbox: could not record a send outcome", extra={"outbox_id": text.id}
                )

    async def _attempt(self, text: store.ClaimedText) -> None:
        now = self._clock()
        if text.not_after is not None and text.not_after <= now:
            await self._final(text, "dead", SendError(ErrorClass.EXPIRED, retryable=False))
            return
        try:
            if text.payload is None:
                raise PhiBoxError("payload already deleted")
            sealed = self._phi.open(text.payload, aad=store.payload_aad(text.id))
        except PhiBoxError:
            log.error("sms outbox: payload cannot be opened", extra={"outbox_id": text.id})
            await self._final(text, "dead", SendError(ErrorClass.REJECTED, retryable=False))
            return
        outbound = OutboundText(
            outbox_id=text.id,
            to=sealed["to"],
            body=sealed["body"],
            template_id=text.template_id,
            status_callback=f"{self._callback_base}?outbox={text.id}"
            if self._callback_base
            else None,
            validity_period_s=_validity(text.not_after, now),
        )
        started = asyncio.get_running_loop().time()
        try:
            result = await self.provider.send(outbound)
        except SendError as exc:
            elapsed = asyncio.get_running_loop().time() - started
            self._metrics.send_seconds.labels(self.provider.name, exc.error_class.value).observe(
                elapsed
            )
            await self._failed(text, exc)
            return
        elapsed = asyncio.get_running_loop().time() - started
        self._metrics.send_seconds.labels(self.provider.name, "sent").observe(elapsed)
        async with self._conn() as conn:
            state = await store.mark_sent(conn, text, sid=result.sid, now=self._clock())
        if state is None:
            log.warning("sms sent after its claim was lost", extra={"outbox_id": text.id})
            return
        self._metrics.sent.labels(text.template_id).inc()
        log.debug(
            "sms sent",
            extra={"outbox_id": text.id, "message_sid": result.sid, "template": text.template_id},
        )

    async def _failed(self, text: store.ClaimedText, exc: SendError) -> None:
        log.warning(
            "sms send failed",
            extra={
                "outbox_id": text.id,
                "template": text.template_id,
                "error": str(exc),
                "attempt": text.attempts,
            },
        )
        if exc.retryable:
            now = self._clock()
            next_at = now + timedelta(seconds=self.policy.delay(text.attempts))
            expired = text.not_after is not None and next_at >= text.not_after
            if text.attempts >= self.policy.max_attempts or expired:
                reason = ErrorClass.EXPIRED if expired else ErrorClass.EXHAUSTED
                final = SendError(
                    reason, retryable=False, http_status=exc.http_status, code=exc.code
                )
                await self._final(text, "dead", final)
                return
            if self._earliest_retry is None or next_at < self._earliest_retry:
                self._earliest_retry = next_at
            async with self._conn() as conn:
                await store.mark_retry(
                    conn,
                    text,
                    next_attempt_at=next_at,
                    error_class=exc.error_class.value,
                    error_code=exc.code or exc.http_status,
                    last_error=str(exc),
                )
            self._metrics.retried.labels(text.template_id, exc.error_class.value).inc()
            return
        if exc.error_class in (ErrorClass.OPTED_OUT, ErrorClass.INVALID_NUMBER):
            await self._final(text, "failed", exc)
            if exc.code in ENGINE_CODES:
                await report_delivery_failure(
                    self._engine(),
                    metrics=self._metrics,
                    phone_hash=text.phone_hash,
                    code=exc.code,
                    correlation_id=text.correlation_id,
                    error_class=exc.error_class,
                )
        elif exc.error_class is ErrorClass.AMBIGUOUS:
            await self._final(text, "failed", exc)
        else:
            await self._final(text, "dead", exc)

    async def _final(self, text: store.ClaimedText, state: str, exc: SendError) -> None:
        async with self._conn() as conn:
            done = await store.mark_final(
                conn,
                text,
                state=state,
                error_class=exc.error_class.value,
                error_code=exc.code or exc.http_status,
                last_error=str(exc),
            )
        if done:
            family = self._metrics.failed if state == "failed" else self._metrics.dead
            family.labels(text.template_id, exc.error_class.value).inc()


def _validity(not_after: datetime | None, now: datetime) -> int | None:
    """Twilio ValidityPeriod for a time-sensitive text: drop it in Twilio's queue at not_after."""
    if not_after is None:
        return None
    return max(1, min(MAX_VALIDITY_S, int((not_after - now).total_seconds())))


async def report_delivery_failure(
    engine: DeliveryFailureSink | None,
    *,
    metrics: SmsMetrics,
    phone_hash: str,
    code: int,
    correlation_id: str,
    error_class: ErrorClass,
) -> None:
    """Tell the SMS engine (opt-out, invalid number). Its absence or failure is logged and counted;
    the outbox row already says what happened."""
    if engine is None:
        log.warning("delivery failure not reported: SMS engine not running", extra={"code": code})
        metrics.engine_notified.labels(error_class.value, "no_engine").inc()
        return
    try:
        await engine.on_delivery_failure(phone_hash, code, correlation_id)
    except Exception:
        log.exception("SMS engine failed to handle a delivery failure", extra={"code": code})
        metrics.engine_notified.labels(error_class.value, "error").inc()
        return
    metrics.engine_notified.labels(error_class.value, "ok").inc()
