"""A queue that has churned: ``.venv/bin/python -m bench.outbox [--rows N] [--no-docs]``.

The SIU outbox (``hl7_outbox``) and the SMS outbox (``sms_outbox``) on a real (embedded) PostgreSQL,
each taken through N rows (default 100,000) that are enqueued, claimed with radsched's own claim
(``radsched.storage.emr_outbox.claim`` in a transaction, ``radsched.storage.sms_outbox.claim_due``), delivered and
deleted, in batches the size of the senders' batches. Every claim is timed. Then the steady state
after the churn: one row at a time enqueued and claimed, 2,000 times. Twice, on fresh databases:
with autovacuum's defaults for these tables (``sql/0007_outbox_autovacuum.sql``'s per-table settings
reset) and with them. Dead rows and autovacuum runs are read from ``pg_stat_user_tables``.

A third run holds one REPEATABLE READ snapshot open for the whole churn (a report or a backup
started before it), which no vacuum setting can get past: it shows what the dead-row metric and its
alert are for.

Writes the ``## Outbox churn`` section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import _docs, _results

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Outbox churn"
TABLES = ("hl7_outbox", "sms_outbox")
#: What sql/0007_outbox_autovacuum.sql sets per table; reset for the "defaults" run.
TUNED_OPTIONS = (
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_vacuum_insert_threshold",
    "autovacuum_analyze_scale_factor",
    "autovacuum_analyze_threshold",
    "autovacuum_vacuum_cost_delay",
)
SIU_BATCH, SMS_BATCH = 100, 16  # radsched.emr.sender and radsched.twilio.sender defaults
DESTINATION = "emr-main"
STEADY = 2000


@dataclass
class Phase:
    claims_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.claims_ms)
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else 0.0


@dataclass
class TableRun:
    churn: Phase = field(default_factory=Phase)
    steady: Phase = field(default_factory=Phase)
    dead_max: int = 0
    dead_after: int = 0
    autovacuums: int = 0


async def _dead(conn: asyncpg.Connection, table: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = $1", table
    )
    assert row is not None
    return int(row["n_dead_tup"]), int(row["autovacuum_count"])


async def _enqueue(conn: asyncpg.Connection, table: str, n: int, body: bytes) -> None:
    if table == "hl7_outbox":
        await conn.execute(
            "INSERT INTO hl7_outbox (destination, control_id, message_type, payload, correlation_id)"
            " SELECT $1, 'B' || nextval('hl7_outbox_id_seq'), 'SIU^S12', $2, 'bench'"
            " FROM generate_series(1, $3)",
            DESTINATION,
            body,
            n,
        )
    else:
        await conn.execute(
            "INSERT INTO sms_outbox (phone_hash, template_id, payload, correlation_id)"
            " SELECT 'h' || g, 'consent_request', $1, 'bench' FROM generate_series(1, $2) g",
            body,
            n,
        )


async def _claim(conn: asyncpg.Connection, table: str, limit: int) -> list[int]:
    """radsched's own claim, as its sender runs it (the SIU sender's in its own transaction)."""
    from radsched.storage import emr_outbox as emr_store
    from radsched.storage import sms_outbox

    if table == "hl7_outbox":
        async with conn.transaction():
            rows = await emr_store.claim(conn, DESTINATION, limit)
        return [r.id for r in rows]
    texts = await sms_outbox.claim_due(
        conn, now=datetime.now(UTC), limit=limit, claimed_by="bench@1"
    )
    return [t.id for t in texts]


async def _deliver_and_delete(conn: asyncpg.Connection, table: str, ids: list[int]) -> None:
    """Delivered, then deleted (the metadata's retention is the daily job's; here it is the churn)."""
    from radsched.storage import emr_outbox as emr_store

    if table == "hl7_outbox":
        now = datetime.now(UTC)
        await emr_store.mark_delivered(conn, [(i, "AA", now) for i in ids])
    else:
        # What mark_sent and the delivered status callback leave (two row versions), then the purge.
        await conn.execute(
            "UPDATE sms_outbox SET state = 'sent', payload = NULL, provider_sid = 'SM' || id"
            " WHERE id = ANY($1::bigint[])",
            ids,
        )
        await conn.execute(
            "UPDATE sms_outbox SET state = 'delivered' WHERE id = ANY($1::bigint[])", ids
        )
    await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1::bigint[])", ids)


async def _history(conn: asyncpg.Connection, table: str, n: int) -> None:
    """Settled rows as months of traffic leave them: delivered SIU metadata is kept for years, sent
    texts until retention. They make the table big, which is what the default thresholds scale by."""
    if table == "hl7_outbox":
        await conn.execute(
            "INSERT INTO hl7_outbox (destination, control_id, message_type, correlation_id, state,"
            " delivered_at, ack_code) SELECT $1, 'H' || g, 'SIU^S12', 'bench', 'delivered', now(),"
            " 'AA' FROM generate_series(1, $2) g",
            DESTINATION,
            n,
        )
    else:
        await conn.execute(
            "INSERT INTO sms_outbox (phone_hash, template_id, correlation_id, state, sent_at,"
            " provider_sid) SELECT 'h' || g, 'consent_request', 'bench', 'delivered', now(),"
            " 'SMH' || g FROM generate_series(1, $1) g",
            n,
        )
    await conn.execute(f"VACUUM ANALYZE {table}")


async def churn_table(
    conn: asyncpg.Connection, table: str, rows: int, steady_s: float, history: int
) -> TableRun:
    run = TableRun()
    await _history(conn, table, history)
    batch = SIU_BATCH if table == "hl7_outbox" else SMS_BATCH
    body = secrets.token_bytes(600)
    _, vacuums_before = await _dead(conn, table)
    began = time.perf_counter()
    done = 0
    while done < rows:
        n = min(500, rows - done)
        await _enqueue(conn, table, n, body)
        left = n
        while left:
            t0 = time.perf_counter()
            ids = await _claim(conn, table, batch)
            run.churn.claims_ms.append((time.perf_counter() - t0) * 1000)
            if not ids:
                raise SystemExit(f"{table}: claim found nothing with {left} rows pending")
            await _deliver_and_delete(conn, table, ids)
            left -= len(ids)
        done += n
        if done % 10_000 == 0:
            dead, _ = await _dead(conn, table)
            run.dead_max = max(run.dead_max, dead)
    run.churn.seconds = time.perf_counter() - began
    began = time.perf_counter()
    for i in range(STEADY):
        # Paced over steady_s, so autovacuum's naptime (1 min by default) passes at least once.
        if (wait := began + i * steady_s / STEADY - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        await _enqueue(conn, table, 1, body)
        t0 = time.perf_counter()
        ids = await _claim(conn, table, batch)
        run.steady.claims_ms.append((time.perf_counter() - t0) * 1000)
        await _deliver_and_delete(conn, table, ids)
    run.steady.seconds = time.perf_counter() - began
    run.dead_after, vacuums = await _dead(conn, table)
    run.dead_max = max(run.dead_max, run.dead_after)
    run.autovacuums = vacuums - vacuums_before
    return run


async def scenario(
    pg: Any, name: str, *, tuned: bool, held: bool, args: argparse.Namespace
) -> dict[str, Any]:
    from radsched.storage.migrate import migrate

    admin = await asyncpg.connect(pg.dsn("postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    conn = await asyncpg.connect(pg.dsn(name))
    holder: asyncpg.Connection | None = None
    try:
        await migrate(conn)
        if not tuned:
            for table in TABLES:
                await conn.execute(f"ALTER TABLE {table} RESET ({', '.join(TUNED_OPTIONS)})")
        if held:
            holder = await asyncpg.connect(pg.dsn(name))
            await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await holder.fetchval("SELECT count(*) FROM hl7_outbox")  # takes the snapshot
        results = {
            table: await churn_table(
                conn,
                table,
                args.held_rows if held else args.rows,
                args.steady_seconds,
                args.history,
            )
            for table in TABLES
        }
        return {"tuned": tuned, "held": held, "tables": results}
    finally:
        if holder is not None:
            await holder.close()
        await conn.close()


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from radsched.storage import embedded

    pg = await embedded.start(work / "pg")
    try:
        admin = await asyncpg.connect(pg.dsn("postgres"))
        settings = {
            n: await admin.fetchval(f"SHOW {n}")
            for n in ("autovacuum", "autovacuum_naptime", "autovacuum_vacuum_cost_delay")
        }
        await admin.close()
        out: dict[str, Any] = {"settings": settings, "runs": {}}
        for name, tuned, held in (
            ("churn_defaults", False, False),
            ("churn_tuned", True, False),
            ("churn_tuned_held", True, True),
        ):
            if held and args.no_held:
                continue
            print(f"{name} ...", file=sys.stderr)
            out["runs"][name] = await scenario(pg, name, tuned=tuned, held=held, args=args)
        return out
    finally:
        await embedded.stop(pg)


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    from bench.mllp.__main__ import machine

    s = r["settings"]
    lines = [
        SECTION,
        "",
        "Reproduce: `.venv/bin/python -m bench.outbox` (options: `--rows`, `--history`, "
        "`--steady-seconds`, `--no-held`, `--held-rows`, `--no-docs`).",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
        f"1-minute load average {r['load'][0]:.1f} before and {r['load'][1]:.1f} after (the machine "
        "is shared: compare rows of the same run).",
        f"Each outbox starts with {args.history:,} settled rows (history: delivered SIU metadata "
        "is kept for years, sent texts until retention), then is taken through "
        f"{args.rows:,} rows enqueued 500 at a time, claimed by "
        f"radsched's own claim in the senders' batches (SIU {SIU_BATCH}, SMS {SMS_BATCH}), "
        "delivered and deleted; every claim is timed. *Steady* is after that churn: one row "
        f"enqueued and claimed at a time, {STEADY:,} times over {args.steady_seconds:g} s (so "
        "autovacuum's naptime passes). Server: autovacuum "
        f"{s['autovacuum']}, naptime {s['autovacuum_naptime']}, cost delay "
        f"{s['autovacuum_vacuum_cost_delay']} (defaults). *defaults*: these tables without "
        "per-table settings; *0007*: with `sql/0007_outbox_autovacuum.sql`; *0007 + held "
        f"snapshot*: one REPEATABLE READ transaction open through the whole churn (of "
        f"{args.held_rows:,} rows: every claim walks every dead row, so the run grows with the "
        "square).",
        "",
        "| outbox | run | churn claims | churn p50 | churn p99 | churn max | steady p50 | "
        "steady p99 | dead rows (max / after) | autovacuums |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "churn_defaults": "defaults",
        "churn_tuned": "0007",
        "churn_tuned_held": "0007 + held snapshot",
    }
    verdicts = []
    for table in TABLES:
        for name, run in r["runs"].items():
            t: TableRun = run["tables"][table]
            lines.append(
                f"| {table} | {labels[name]} | {len(t.churn.claims_ms):,} | "
                f"{t.churn.pct(0.5):.2f} ms | {t.churn.pct(0.99):.2f} ms | "
                f"{max(t.churn.claims_ms):.1f} ms | {t.steady.pct(0.5):.2f} ms | "
                f"{t.steady.pct(0.99):.2f} ms | {t.dead_max:,} / {t.dead_after:,} | "
                f"{t.autovacuums} |"
            )
            if name == "churn_tuned":
                worst = max(t.churn.pct(0.99), t.steady.pct(0.99))
                verdicts.append(
                    f"- {table}: p99 claim {worst:.2f} ms with 0007 (worst of churn and steady; "
                    f"target ≤ 10 ms, issue 16: {'met' if worst <= 10 else 'NOT met'})"
                )
    lines += ["", *verdicts, ""]
    return "\n".join(lines)


def record_targets(r: dict[str, Any], args: argparse.Namespace) -> None:
    """The targets' figures for the summary (bench/_results.py): the run with 0007's settings."""
    run = r["runs"].get("churn_tuned")
    if run is None:
        return
    short = "" if args.rows >= 100_000 else f"; only {args.rows:,} rows, not 100,000"
    for table, target in (("hl7_outbox", "16.5-siu"), ("sms_outbox", "16.5-sms")):
        t: TableRun = run["tables"][table]
        worst = max(t.churn.pct(0.99), t.steady.pct(0.99))
        _results.record(
            target,
            f"{worst:.2f} ms (churn p99 {t.churn.pct(0.99):.2f}, steady p99 "
            f"{t.steady.pct(0.99):.2f}; {t.dead_max:,} dead rows at most{short})",
            worst / 10,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox")
    parser.add_argument("--rows", type=int, default=100_000, help="rows through each outbox")
    parser.add_argument("--history", type=int, default=300_000, help="settled rows beforehand")
    parser.add_argument("--steady-seconds", type=float, default=70.0, help="steady phase length")
    parser.add_argument("--no-held", action="store_true", help="skip the held-snapshot run")
    parser.add_argument(
        "--held-rows",
        type=int,
        default=25_000,
        help="rows through each outbox while a snapshot is held (each claim walks them all)",
    )
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="radsched-bench-outbox-"))
    work.chmod(0o711)  # the embedded server may run as another user under root
    try:
        load_before = os.getloadavg()[0]
        result = asyncio.run(bench(args, work))
        result["load"] = (load_before, os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, run in result["runs"].items():
        for table, t in run["tables"].items():
            print(
                f"{name} {table}: churn {t.churn.seconds:.1f} s, steady p99 "
                f"{t.steady.pct(0.99):.2f} ms, median {statistics.median(t.steady.claims_ms):.2f}",
                file=sys.stderr,
            )
    record_targets(result, args)
    _results.save("outbox")
    text = render(result, args)
    print(text)
    if not args.no_docs:
        _docs.write_section(SECTION, text)
        print("written to docs/performance.md", file=sys.stderr)


if __name__ == "__main__":
    main()
