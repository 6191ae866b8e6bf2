"""Reminders falling due at once: ``.venv/bin/python -m bench.reminders [--appointments N] [--rate R]
[--queue-seconds S] [--no-overflow] [--no-docs]``.

Issue 13's benchmark. On an embedded PostgreSQL, N appointments (default 10,000) booked by text, each
with one reminder due at 09:00 local (``America/New_York``), written by radsched's own storage functions
(``appointments.insert``, ``reminders.insert_planned`` with the payload sealed by a ``PhiBox``, consent
granted with ``consents.record_consent``). Then:

1. **Sweep**: radsched's ``Reminders.sweep`` (radsched/sms/reminders.py) on an injected clock that starts at
   09:00:00 and runs on: due rows claimed ``FOR UPDATE SKIP LOCKED`` in batches of ``SWEEP_BATCH``, each
   checked, rendered, queued into ``sms_outbox`` (sealed) and marked sent in the batch's transaction. Timed
   as a whole and per batch (each batch transaction), with this process's and PostgreSQL's CPU.
2. **Send**: radsched's ``OutboxSender`` with the real Twilio SDK (``TwilioProvider``) against the Twilio
   double (``tests/twilio_double.py``, a subprocess) that enforces a per-sender rate the way Twilio does
   (requests above it are accepted and queued; a sender's queue holds ``--queue-seconds`` of segments,
   36,000 s as at Twilio; beyond it 400 / 21611). Timed from the wake to the last text accepted; the double
   says when the last one leaves the sender's queue at ``--rate`` and whether any would outlive its
   ValidityPeriod there. Every text must be sent exactly once (outbox rows and the double's count).
3. **Overflow** (unless ``--no-overflow``): the same sender against a double whose queue is short
   (``OVERFLOW_QUEUE_S`` at 1/s) with ``OVERFLOW_TEXTS`` texts queued at once: a burst bigger than the
   sender's Twilio queue. The refused ones (21611) are retried with the outbox's backoff until the queue
   has room; none may be lost (this takes a few minutes of real time: the queue drains at 1/s).

The process is pinned to core DAEMON_CPU, the double to LOAD_CPU; PostgreSQL is not pinned. Writes the
``## Reminders due at once`` section of docs/performance.md. No issue target has a number: informational.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg

from bench import _docs, _results
from bench._stack import DAEMON_CPU, LOAD_CPU
from bench.webhooks.__main__ import (
    TWILIO_FROM,
    numbers,
    pin,
    postgres_cpu,
    start_double,
    wait_outbox_empty,
)

SECTION = "## Reminders due at once"
TZ = ZoneInfo("America/New_York")
OVERFLOW_TEXTS, OVERFLOW_QUEUE_S = 200, 60.0
SEED_BATCH = 500


class TimedDatabase:
    """Builds radsched's ``Database`` whose named transactions are also timed one by one here."""

    @staticmethod
    async def connect(dsn: str, times: dict[str, list[float]]) -> Any:
        from radsched.storage.db import Database

        class Timed(Database):
            @asynccontextmanager
            async def transaction(
                self, name: str, *, isolation: str = "read_committed"
            ) -> AsyncIterator[asyncpg.Connection]:
                began = time.perf_counter()
                try:
                    async with super().transaction(name, isolation=isolation) as conn:
                        yield conn
                finally:
                    times.setdefault(name, []).append(time.perf_counter() - began)

        db = await Timed.connect(dsn, registry=None)
        return db


@dataclass
class Running:
    """The injected clock: 09:00 local at ``start()``, then running with the wall clock."""

    at: datetime
    began: float = field(default_factory=time.perf_counter)
    frozen: bool = True

    def start(self) -> None:
        self.began, self.frozen = time.perf_counter(), False

    def __call__(self) -> datetime:
        if self.frozen:
            return self.at
        return self.at + timedelta(seconds=time.perf_counter() - self.began)


@dataclass
class Env:
    """What every phase uses: the database, the keys, the clock, the double's credentials."""

    db: Any  # TimedDatabase.connect's
    dsn: str
    phi: Any  # radsched.privacy.PhiBox
    hash_key: bytes
    clock: Running
    work: Path
    times: dict[str, list[float]]
    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    token: str = field(default_factory=lambda: secrets.token_hex(16))


def nine_am() -> datetime:
    """09:00 in New York, two days from now (every start is after it, in real time too)."""
    day = (datetime.now(TZ) + timedelta(days=2)).date()
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=TZ)


async def seed(conn: asyncpg.Connection, phi: Any, hash_key: bytes, n: int, due: datetime) -> float:
    """N appointments booked by text for the next day (09:00-17:45 local, every 15 min at 40
    rooms' worth), each with a '1d' reminder due at ``due``; consent granted."""
    from radsched.privacy import phone_hash
    from radsched.storage import appointments, consents
    from radsched.storage import reminders as store

    began = time.perf_counter()
    phones = numbers(n)
    for first in range(0, n, SEED_BATCH):
        async with conn.transaction():
            for i in range(first, min(n, first + SEED_BATCH)):
                start = due + timedelta(days=1, minutes=15 * (i % 36))
                hashed = phone_hash(hash_key, phones[i])
                appointment_id = f"BR{i:07d}"
                await appointments.insert(
                    conn,
                    appointments.NewAppointment(
                        appointment_id=appointment_id,
                        filler_appointment_id=f"F{i:07d}",
                        order_key=f"bench-order-{i}",
                        booking_id=None,
                        slot_id=f"S{i:07d}",
                        location_id="LOC-DT",
                        modality="CR",
                        start_at=start,
                        duration_minutes=15,
                        origin="sms",
                        confirmation_code=f"C{i:05d}",
                        dialect="generic",
                        phi=None,
                        phi_expires_at=start + timedelta(days=1),
                        phone_hash=hashed,
                    ),
                    now=due - timedelta(days=5),
                )
                await consents.record_consent(
                    conn, hashed, granted=True, source="YES", now=due - timedelta(days=5)
                )
                await store.insert_planned(
                    conn,
                    phi=phi,
                    appointment_id=appointment_id,
                    start_at=start,
                    phone_hash=hashed,
                    due=[("1d", due)],
                    payload={
                        "phone": phones[i],
                        "location_name": "Downtown Imaging",
                        "modality": "CR",
                        "procedure_code": "CR-CHEST",
                        "language": None,
                    },
                    now=due - timedelta(days=5),
                )
    return time.perf_counter() - began


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else 0.0


async def sweep(env: Env) -> dict[str, Any]:
    """radsched's sweep, once, at 09:00; the sweep's own timer is stopped first (it would race)."""
    from radsched.intake.component import conversation_config
    from radsched.settings import Settings
    from radsched.sms.reminders import SWEEP_BATCH, ReminderPolicy, Reminders, reminder_texts
    from radsched.storage.orders import OrderStore

    settings = Settings(
        practice_name="Lakeside Imaging",
        scheduling_phone="(555) 010-0200",
        reminders="1d",
        reminder_window="09:00-18:00",
        timezone="America/New_York",
        quiet_hours="",
    )
    cfg = conversation_config(settings, {})
    clock, times, work = env.clock, env.times, env.work
    before = clock.at
    clock.at = before - timedelta(hours=1)  # nothing due while the timer takes its first look
    reminders = Reminders(
        db=env.db,
        phi=env.phi,
        hash_key=env.hash_key,
        orders=OrderStore(env.hash_key, env.phi),
        policy=ReminderPolicy.from_settings(settings),
        clock=clock,
        registry=None,
    )
    async with AsyncExitStack() as stack:
        reminders.start_sweep(reminder_texts(cfg, {}), lambda: None, stack)
    clock.at = before
    times.pop("reminders.sweep", None)
    cpu0, pg0 = time.process_time(), postgres_cpu(work / "pg")
    clock.start()
    began = time.perf_counter()
    settled = await reminders.sweep()
    seconds = time.perf_counter() - began
    cpu, pg = time.process_time() - cpu0, postgres_cpu(work / "pg") - pg0
    batches = [t for t in times.get("reminders.sweep", []) if t > 0]
    return {
        "settled": settled,
        "seconds": seconds,
        "batch": SWEEP_BATCH,
        "batches_ms": [t * 1000 for t in batches],
        "python_cpu_s": cpu,
        "pg_cpu_s": pg,
    }


async def send(env: Env, double_url: str, expected: int) -> dict[str, Any]:
    """radsched's outbox sender against the double until the outbox is empty."""
    from radsched.twilio.providers import TwilioProvider
    from radsched.twilio.sender import OutboxSender, SmsMetrics

    dsn = env.dsn
    sender = OutboxSender(
        db=env.db,
        dsn=dsn,
        phi=env.phi,
        provider=TwilioProvider(
            account_sid=env.account_sid,
            auth_token=env.token,
            sender=TWILIO_FROM,
            api_url=double_url,
        ),
        metrics=SmsMetrics(None),
        clock=env.clock,
        status_callback_base=None,
        engine=lambda: None,
    )
    began = time.perf_counter()
    await sender.start()
    try:
        sender.wake()
        await wait_outbox_empty(dsn, 1800)
        seconds = time.perf_counter() - began
    finally:
        await sender.aclose(10)
    conn = await asyncpg.connect(dsn)
    try:
        states = {
            r["state"]: r["n"]
            for r in await conn.fetch("SELECT state, count(*) AS n FROM sms_outbox GROUP BY 1")
        }
        codes = {
            str(r["error_code"]): r["n"]
            for r in await conn.fetch(
                "SELECT error_code, count(*) AS n FROM sms_outbox WHERE error_code IS NOT NULL"
                " GROUP BY 1"
            )
        }
    finally:
        await conn.close()
    async with aiohttp.ClientSession() as http, http.get(double_url + "/_double/stats") as r:
        stats: dict[str, Any] = await r.json()
    return {"seconds": seconds, "states": states, "codes": codes, "double": stats,
            "expected": expected}  # fmt: skip


async def overflow(env: Env) -> dict[str, Any]:
    """A burst bigger than the sender's Twilio queue: OVERFLOW_TEXTS at 1/s, a short queue."""
    from radsched.privacy import phone_hash
    from radsched.storage.sms_outbox import enqueue_text

    conn = await asyncpg.connect(env.dsn)
    try:
        await conn.execute("DELETE FROM sms_outbox")
        async with conn.transaction():
            for phone in numbers(OVERFLOW_TEXTS):
                await enqueue_text(
                    conn,
                    phi=env.phi,
                    to_e164=phone,
                    body="Lakeside Imaging: benchmark reminder.",
                    template_id="reminder",
                    phone_hash=phone_hash(env.hash_key, phone),
                    conversation_id=uuid.uuid4(),
                    correlation_id="bench",
                    now=env.clock(),
                )
    finally:
        await conn.close()
    pin(LOAD_CPU)
    double, url = start_double(
        env.account_sid, env.token, "--rate", "1", "--queue-seconds", str(OVERFLOW_QUEUE_S)
    )
    pin(DAEMON_CPU)
    try:
        return await send(env, url, OVERFLOW_TEXTS)
    finally:
        double.terminate()
        double.wait(10)


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from radsched.privacy import PhiBox
    from radsched.storage import embedded
    from radsched.storage.migrate import migrate

    pg = await embedded.start(work / "pg")
    double: subprocess.Popen[str] | None = None
    db: Any = None
    try:
        admin = await asyncpg.connect(pg.dsn("postgres"))
        await admin.execute('CREATE DATABASE "bench"')
        await admin.close()
        dsn = pg.dsn("bench")
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            phi = PhiBox.from_secret("hex:" + secrets.token_hex(32))
            hash_key = secrets.token_bytes(32)
            due = nine_am()
            print(f"seeding {args.appointments:,} appointments ...", file=sys.stderr)
            seeded_s = await seed(conn, phi, hash_key, args.appointments, due)
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        times: dict[str, list[float]] = {}
        pin(DAEMON_CPU)
        db = await TimedDatabase.connect(dsn, times)
        env = Env(db, dsn, phi, hash_key, Running(due), work, times)
        print("sweep at 09:00 ...", file=sys.stderr)
        swept = await sweep(env)
        async with db.transaction("bench.count") as c:
            queued = int(await c.fetchval("SELECT count(*) FROM sms_outbox"))
            sent_rows = int(
                await c.fetchval("SELECT count(*) FROM appointment_reminders WHERE state = 'sent'")
            )
        pin(LOAD_CPU)
        double, url = start_double(
            env.account_sid,
            env.token,
            "--rate",
            str(args.rate),
            "--queue-seconds",
            str(args.queue_seconds),
        )
        pin(DAEMON_CPU)
        print(f"sending {queued:,} texts ...", file=sys.stderr)
        sent = await send(env, url, queued)
        double.terminate()
        double.wait(10)
        double = None
        flooded = None
        if not args.no_overflow:
            print("overflow ...", file=sys.stderr)
            flooded = await overflow(env)
        return {"seeded_s": seeded_s, "sweep": swept, "queued": queued,
                "reminders_sent": sent_rows, "send": sent, "overflow": flooded}  # fmt: skip
    finally:
        if db is not None:
            await db.close()
        if double is not None:
            double.terminate()
            double.wait(10)
        await embedded.stop(pg)


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    from bench.mllp.__main__ import machine

    s, t = r["sweep"], r["send"]
    d = t["double"]
    api_s = (d["last_arrival"] - d["first_arrival"]) if d["accepted"] > 1 else 0.0
    api_rate = d["accepted"] / api_s if api_s else 0.0
    leaves = (d["last_departure"] - d["first_arrival"]) if d["accepted"] else 0.0
    batches = s["batches_ms"]
    lines = [
        SECTION,
        "",
        "Reproduce: `.venv/bin/python -m bench.reminders` (options: `--appointments`, `--rate`, "
        "`--queue-seconds`, `--no-overflow`, `--no-docs`).",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
        f"1-minute load average {r['load'][0]:.1f} before and {r['load'][1]:.1f} after (the machine "
        "is shared). Informational: issue 13 gives no target number.",
        "",
        f"{args.appointments:,} appointments booked by text, each with one reminder due at 09:00 "
        "local, written by radsched's storage functions (payload sealed with PHI_KEY; "
        f"seeding {r['seeded_s']:.0f} s). radsched's `Reminders.sweep` runs once on a clock "
        "starting at 09:00:00 (benchmark process pinned to one core, PostgreSQL unpinned); "
        "then radsched's outbox sender (the Twilio SDK, 16 texts in flight) sends the queued "
        f"texts to the Twilio double, which holds each sender to {args.rate:g} segment/s the "
        "way Twilio does: above the rate a request is still accepted and waits in the sender's "
        f"queue ({args.queue_seconds:,.0f} s of segments; Twilio's is about 10 hours), past a "
        "full queue it is refused (400 / 21611).",
        "",
        "| phase | figure |",
        "|---|---|",
        f"| sweep: {s['settled']:,} reminders claimed, checked, rendered, queued and marked sent "
        f"| {s['seconds']:.1f} s ({s['settled'] / max(s['seconds'], 1e-9):,.0f} reminders/s; "
        f"last one queued at 09:00:{s['seconds']:02.0f}) |",
        f"| sweep: per batch of {s['batch']} (one transaction each, {len(batches)} batches) "
        f"| p50 {_pct(batches, 0.5):.0f} ms, p99 {_pct(batches, 0.99):.0f} ms, "
        f"max {max(batches, default=0):.0f} ms |",
        f"| sweep: CPU | PostgreSQL {s['pg_cpu_s']:.1f} s, radsched (the benchmark process: "
        f"claim, open, render, seal, audit) {s['python_cpu_s']:.1f} s |",
        f"| sweep: outbox rows queued / reminder rows sent | {r['queued']:,} / "
        f"{r['reminders_sent']:,} |",
        f"| send: outbox to the double (API accepted) | {d['accepted']:,} texts in "
        f"{api_s:.1f} s: {api_rate:,.0f} texts/s (wake to empty outbox {t['seconds']:.1f} s) |",
        f"| send: outbox states after | {_states(t['states'])} (expected {t['expected']:,} sent) |",
        f"| send: last text leaves the sender's Twilio queue at {args.rate:g}/s "
        f"| {_hms(leaves)} after the first (longest wait in Twilio's queue {_hms(d['max_wait_s'])}; "
        f"{d['expired_in_queue']} past their ValidityPeriod there; {d['refused_queue_full']} "
        "refused as queue full) |",
    ]
    o = r.get("overflow")
    if o is not None:
        od = o["double"]
        lines.append(
            f"| overflow: {o['expected']:,} texts at once, 1/s, a {OVERFLOW_QUEUE_S:.0f} s queue "
            f"| {od['refused_queue_full']:,} requests refused with 21611 and retried; "
            f"{od['accepted']:,} accepted, the last {o['seconds']:.0f} s after the wake; outbox "
            f"{_states(o['states'])} |"
        )
    lines += [
        "",
        f"What it means. The sweep is not the bottleneck: {s['settled']:,} reminders are in the "
        f"outbox {s['seconds']:.0f} s after 09:00, and the outbox hands them to Twilio at "
        f"{api_rate:,.0f}/s. Of the sweep's {s['seconds']:.1f} s, PostgreSQL used "
        f"{s['pg_cpu_s']:.1f} s of CPU and radsched {s['python_cpu_s']:.1f} s (opening each sealed "
        "payload, rendering, sealing the text, the audit row): its cost is radsched's own, not "
        "the database's; the rest is waiting for a core on the shared machine. What decides when patients get them is the sender's throughput at "
        f"Twilio: at {args.rate:g} segment/s the last leaves Twilio {_hms(leaves)} after the "
        "first reached it. The same "
        f"{d['segments']:,} segments take {_hms(d['segments'] / 3)} on a toll-free number "
        f"(3/s) and {_hms(d['segments'] / 100)} on a short code (100/s); a 10DLC campaign's "
        "limits are set by its trust score (reference/sms.md section 1.7). The outbox need not "
        "pace itself while the burst fits the sender's queue (Twilio queues and sends every "
        "text: none is lost, each is sent once); a reminder's ValidityPeriod runs to its "
        "appointment's start (at most 10 hours), so one stuck that long in Twilio's queue is "
        "dropped there rather than sent late.",
    ]
    if o is not None:
        lines.append(
            "A burst bigger than the queue: Twilio refuses the excess with 21611 (queue full). "
            "Until this benchmark radsched dead-lettered those texts as rejected (lost); it now "
            "retries them with the outbox's backoff (docs/twilio.md, error codes), and the "
            "overflow row shows every one sent once as the queue drains. At 1/s a long code's "
            "queue holds 36,000 segments, so 10,000 reminders fit; the retries are bounded "
            "(10 attempts, about 20 minutes) and stop at the appointment's start, so a site "
            "sending far more than that at 09:00 from one long code needs a faster sender (or "
            "more numbers behind a Messaging Service)."
        )
    return "\n".join(lines) + "\n"


def _states(states: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {state}" for state, n in sorted(states.items())) or "none"


def main() -> None:
    # The refusals of the overflow run are expected; their warnings would bury the figures.
    logging.getLogger("radsched").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m bench.reminders")
    parser.add_argument("--appointments", type=int, default=10_000)
    parser.add_argument(
        "--rate", type=float, default=1.0, help="segments/s per sender at the double (long code: 1)"
    )
    parser.add_argument(
        "--queue-seconds", type=float, default=36_000.0, help="a sender's Twilio queue, at its rate"
    )
    parser.add_argument("--no-overflow", action="store_true", help="skip the queue-full run")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="radsched-bench-reminders-"))
    work.chmod(0o711)  # the embedded server may run as another user under root
    try:
        load_before = os.getloadavg()[0]
        result = asyncio.run(bench(args, work))
        result["load"] = (load_before, os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sweep_s = result["sweep"]
    print(
        json.dumps(
            {
                "sweep_s": sweep_s["seconds"],
                "batch_p99_ms": _pct(sweep_s["batches_ms"], 0.99),
                "median_batch_ms": statistics.median(sweep_s["batches_ms"] or [0]),
                "send": result["send"]["double"],
            }
        ),
        file=sys.stderr,
    )
    for phase in ("send", "overflow"):
        run = result[phase]
        if run is None:
            continue
        sent = run["states"].get("sent", 0)
        if not sent == run["double"]["accepted"] == run["expected"]:
            raise SystemExit(
                f"{phase}: not every text went once: {run['expected']} queued, {sent} sent, "
                f"{run['double']['accepted']} accepted by the double ({run['states']})"
            )
    if result["queued"] != args.appointments:
        raise SystemExit(f"the sweep queued {result['queued']} of {args.appointments} reminders")
    _results.save("reminders")
    text = render(result, args)
    print(text)
    if not args.no_docs:
        _docs.write_section(SECTION, text)
        print("written to docs/performance.md", file=sys.stderr)


if __name__ == "__main__":
    main()
