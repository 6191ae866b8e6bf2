"""Order intake and conversation benchmark: ``.venv/bin/python -m bench.intake [--seconds S]
[--patients K] [--rate R] [--no-docs]``.

Real parts only: ``radsched run`` (a subprocess pinned to core 0, with the simulated RIS in-process)
on an embedded PostgreSQL; its texts go through the outbox and the Twilio SDK to the Twilio double
(a subprocess pinned to core 1); load generators run pinned to core 1.

1. Orders over MLLP (``bench/intake/loadgen.py``): unique ORM^O01 messages, closed loop, one message
   in flight per connection, 1 and then 8 connections. Each AA means: order sealed and stored,
   conversation created, consent request in the SMS outbox, ACK recorded — all committed before the
   ACK left. The outbox sender delivers the texts to the double meanwhile.
2. Conversations through signed ``/sms/inbound`` webhooks (``bench/webhooks/loadgen.py``), open loop
   at R/s: K patients answer YES (consent; RIS location query after commit; location menu), then
   ``1`` (RIS slot query; slot menu), then ``2`` (booking on the simulated RIS; SIU^S12 to the EMR
   sink; confirmation). Latency is the webhook's (transaction 1); each round is also timed until
   every conversation reached its next state (transaction 2 after the RIS answer).

Writes the ``## Order intake and conversations`` section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import _docs, _results, _stack
from bench._stack import DAEMON_CPU, LOAD_CPU
from bench.twoproc.share import tree_cpu_seconds
from bench.webhooks.__main__ import (
    PUBLIC_URL,
    TWILIO_FROM,
    loadgen,
    pin,
    wait_outbox_empty,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "performance.md"
SECTION = "## Order intake and conversations"
#: About an order's size: the ceiling's single INSERT carries as many bytes.
CEILING_ROW_BYTES = 600
AREAS = ("212", "646", "917", "718", "347", "929", "315", "518", "585", "607")


def phones(count: int) -> list[str]:
    """Distinct valid US numbers (10,000 per area code)."""
    return [f"{AREAS[n // 10_000]}555{n % 10_000:04d}" for n in range(count)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mllp_load(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    return run_pinned("bench.intake.loadgen", spec, work, LOAD_CPU)


_BUSY = ("loading_locations", "loading_slots", "booking")


async def wait_settled(dsn: str, hashes: list[str], previous: str, timeout: float = 300) -> None:
    """Until none of these phones' conversations is in ``previous`` or waiting for the RIS."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        while await conn.fetchval(
            "SELECT count(*) FROM sms_conversations"
            " WHERE state = ANY($1::text[]) AND phone_hash = ANY($2::text[])",
            [previous, *_BUSY],
            hashes,
        ):
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"conversations did not leave {previous} in {timeout}s")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def pg_baseline(dsn: str, statements: int, seconds: float = 2.0) -> float:
    """Transactions/s of ``statements`` one-row inserts each, 8 connections: what a round trip
    to PostgreSQL costs on this machine, for reading the figures above."""
    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_baseline (v int)")
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with pool.acquire() as conn, conn.transaction():
                    for _ in range(statements):
                        await conn.execute("INSERT INTO bench_baseline VALUES (1)")
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        return done / (time.perf_counter() - began)
    finally:
        await pool.close()


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from radsched.privacy import phone_hash

    stack = await _stack.start(work, "bench")
    pg, dsn, env = stack.pg, stack.dsn, stack.env
    account_sid, token, hash_key = stack.account_sid, stack.token, stack.hash_key
    try:
        daemon = stack.daemon
        host, port = daemon.addresses["mllp"]
        assert daemon.proc is not None
        daemon_pid = daemon.proc.pid
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        numbers = phones(len(AREAS) * 10_000)
        used = 0

        def orders(count: int) -> list[list[str]]:
            nonlocal used
            batch = [
                [f"O{used + i:07d}", f"M{used + i:07d}", numbers[used + i]] for i in range(count)
            ]
            used += count
            return batch

        def intake(connections: int, count: int, seconds: float) -> dict[str, Any]:
            spec = {"host": host, "port": port, "connections": connections, "seconds": seconds}
            cpu, pg_cpu = cpu_seconds(daemon_pid), tree_cpu_seconds(postmaster)
            result = mllp_load({**spec, "orders": orders(count)}, work)
            done = max(1, result["orders"])
            # The daemon's CPU (user + system) per order: what one core can sustain; PostgreSQL's
            # (postmaster and backends, the outbox sender's statements included) shares the other.
            result["cpu_ms"] = (cpu_seconds(daemon_pid) - cpu) * 1000 / done
            result["pg_cpu_ms"] = (tree_cpu_seconds(postmaster) - pg_cpu) * 1000 / done
            return result

        warm = intake(4, 500, 30)
        one = intake(1, 20_000, args.seconds)
        eight = intake(8, 60_000, args.seconds)
        # The ceiling right after, on the same server, once the daemon's outbox has gone quiet.
        await wait_outbox_empty(dsn, 600)
        ceiling = commit_ceiling(dsn, pg, work, args.seconds)
        if args.orders_only:
            return {"one": one, "eight": eight, "ceiling": ceiling, "orders_only": True}
        # Conversations for the webhook rounds: K more orders, however long that takes.
        first = used
        seeded = intake(8, args.patients, 3600)
        await wait_outbox_empty(dsn, 600)
        patients = ["+1" + n for n in numbers[first : first + seeded["orders"]]]
        hashes = [phone_hash(bytes.fromhex(hash_key), p) for p in patients]
        spec = {
            "url": daemon.url(),
            "public_url": PUBLIC_URL,
            "auth_token": token,
            "account_sid": account_sid,
            "to": TWILIO_FROM,
            "rate": args.rate,
        }
        rounds = {}
        for body, previous in (
            ("YES", "awaiting_consent"),
            ("1", "choosing_location"),
            ("2", "choosing_slot"),
        ):
            started = time.perf_counter()
            # Patients spread over the three locations and the three offered times; the booking
            # round is a herd on nine slots, so only --herd patients take part in it.
            talking = patients[: args.herd] if body == "2" else patients
            messages = [
                (p, body if body == "YES" else str(1 + i % 3)) for i, p in enumerate(talking)
            ]
            result = loadgen({**spec, "messages": messages}, work)
            await wait_settled(dsn, hashes, previous if body != "2" else "booking")
            result["settled_s"] = time.perf_counter() - started
            rounds[body] = result
            await wait_outbox_empty(dsn, 600)
        conn = await asyncpg.connect(dsn)
        booked = await conn.fetchval("SELECT count(*) FROM bookings WHERE state = 'booked'")
        states = dict(
            await conn.fetch(
                "SELECT state, count(*) FROM sms_conversations"
                " WHERE phone_hash = ANY($1::text[]) GROUP BY state",
                hashes,
            )
        )
        await conn.close()
        stack.stop_daemon()
        engine = await engine_rounds(args, work, pg, env, numbers[: args.engine_patients])
        baseline = {n: await pg_baseline(pg.dsn("bench_engine"), n) for n in (1, 10)}
        return {
            "warm": warm,
            "one": one,
            "eight": eight,
            "seeded": seeded,
            "rounds": rounds,
            "booked": booked,
            "states": states,
            "engine": engine,
            "baseline": baseline,
            "ceiling": ceiling,
        }
    finally:
        await _stack.stop(stack)


def commit_ceiling(dsn: str, pg: Any, work: Path, seconds: float) -> dict[str, Any]:
    """Single-INSERT transactions of an order's size at 8 clients: an asyncpg loop (uvloop) and,
    when the server's binaries include it, pgbench; the better of the two is the ceiling."""
    from radsched.storage import embedded

    spec = {"dsn": dsn, "clients": 8, "seconds": seconds, "bytes": CEILING_ROW_BYTES}
    found = {"asyncpg": run_pinned("bench.intake.ceiling", spec, work, LOAD_CPU)}
    pgbench = embedded.find_binaries() / "pgbench"
    if pgbench.exists():
        script = work / "ceiling.sql"
        script.write_text(
            f"INSERT INTO bench_commit_ceiling (body) VALUES (repeat('x', {CEILING_ROW_BYTES}));\n"
        )
        out = subprocess.run(
            [str(pgbench), "-n", "-c", "8", "-j", "1", "-T", f"{max(1, round(seconds))}",
             "-r", "-f", str(script), dsn],
            capture_output=True, text=True, check=False,
            preexec_fn=lambda: os.sched_setaffinity(0, {LOAD_CPU}),
        )  # fmt: skip
        for line in out.stdout.splitlines():
            if line.startswith("tps = "):
                found["pgbench"] = {"per_second": float(line.split()[2])}
            elif "latency average" in line:
                found.setdefault("pgbench_latency_ms", {"avg": float(line.split()[3])})
    best = max(
        (name for name in found if "per_second" in found[name]),
        key=lambda name: found[name]["per_second"],
    )
    return {"best": best, "per_second": found[best]["per_second"], **found}


async def engine_rounds(
    args: argparse.Namespace, work: Path, pg: Any, env: dict[str, str], patients: list[str]
) -> dict[str, Any]:
    """The in-process part (``bench/intake/engine.py``) on a fresh database, pinned to one core."""
    admin = await asyncpg.connect(pg.dsn("postgres"))
    await admin.execute('CREATE DATABASE "bench_engine"')
    await admin.close()
    data_dir = work / "engine-data"
    data_dir.mkdir(mode=0o711)
    settings = {key.removeprefix("RADSCHED_").lower(): value for key, value in env.items()} | {
        "database_url": pg.dsn("bench_engine"),
        "http_listen": "127.0.0.1:0",
        "mllp_listen": "127.0.0.1:0",
    }
    spec = {
        "data_dir": str(data_dir),
        "settings": settings,
        "patients": patients,
        "concurrency": args.concurrency,
        "rounds": [
            ["HELP (reply text only)", ["HELP"], len(patients)],
            ["YES → location menu", ["YES"], len(patients)],
            ["1-3 → slot menu", ["1", "2", "3"], len(patients)],
            ["1-3 → booking (herd)", ["1", "2", "3"], args.herd],
        ],
    }
    return run_pinned("bench.intake.engine", spec, work, DAEMON_CPU)


def run_pinned(module: str, spec: dict[str, Any], work: Path, cpu: int) -> dict[str, Any]:
    path = work / f"{module}-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(spec))
    pin(cpu)
    try:
        out = subprocess.run(
            [sys.executable, "-m", module, str(path)],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
        )
    finally:
        pin(LOAD_CPU)
    if out.returncode != 0:
        raise SystemExit(f"{module} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    from bench.mllp.__main__ import machine

    def intake_row(name: str, res: dict[str, Any]) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(res["codes"].items()))
        return (
            f"| {name} | {res['orders']} | {res['per_second']:.0f} | {res['p50_ms']:.1f} | "
            f"{res['p99_ms']:.1f} | {res['max_ms']:.1f} | {res['cpu_ms']:.2f} | "
            f"{res.get('pg_cpu_ms', 0):.2f} | {codes} |"
        )

    def round_row(name: str, res: dict[str, Any]) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(res["statuses"].items()))
        return (
            f"| {name} | {res['requests']} | {res['per_second']:.0f} | {res['p50_ms']:.1f} | "
            f"{res['p99_ms']:.1f} | {res['max_ms']:.1f} | {res['settled_s']:.1f} | {statuses} |"
        )

    def engine_row(name: str, res: dict[str, Any]) -> str:
        return (
            f"| {name} | {res['calls']} | {res['per_second']:.0f} | "
            f"{res['settled_per_second']:.0f} | {res['p50_ms']:.1f} | {res['p99_ms']:.1f} | "
            f"{res['max_ms']:.1f} | {res['cpu_ms']:.2f} |"
        )

    eight, rounds, engine = r["eight"], r["rounds"], r["engine"]
    orders_ok = eight["per_second"] >= 1000 and eight["p99_ms"] < 20
    # The booking round is a thundering herd (see the text): informative, not the target's test.
    judged = [x for name, x in engine["rounds"].items() if "booking" not in name]
    worst = max(x["p99_ms"] for x in judged)
    slowest = min(x["per_second"] for x in judged)
    texts_ok = slowest >= 500 and worst < 20
    return "\n".join(
        [
            SECTION,
            "",
            "Reproduce: `.venv/bin/python -m bench.intake` (options: `--seconds`, `--patients`, "
            "`--rate`, `--no-docs`).",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
            f"1-minute load average {r['load'][0]:.1f} before and {r['load'][1]:.1f} after "
            "(other work on the machine makes these figures vary by a factor of two or more).",
            f"`radsched run` pinned to core {DAEMON_CPU} (MLLP listener, intake, SMS engine, outbox "
            "sender, simulated RIS, EMR sender and sink all in that one process); load generators and "
            f"the Twilio double pinned to core {LOAD_CPU}; embedded PostgreSQL unpinned.",
            "",
            "**Orders over MLLP, commit before ACK.** Every order is unique (order id, MRN, mobile "
            "number); an AA means the sealed order, its conversation, the consent request in the SMS "
            "outbox, the audit rows and the ACK record were committed. The outbox sender delivered "
            "each consent request to the Twilio double during the run.",
            "",
            "| connections | orders | orders/s | p50 ms | p99 ms | max ms | daemon CPU ms/order "
            "| PostgreSQL CPU ms/order | ACK codes |",
            "|---|---|---|---|---|---|---|---|---|",
            intake_row("1", r["one"]),
            intake_row("8", eight),
            "",
            *ceiling_lines(r),
            "",
            f"**Conversations through signed webhooks**, open loop at {args.rate:.0f}/s, "
            f"{args.patients} patients per round. Latency is the webhook's (lock, step, store, "
            "outbox, audit, commit); `settled` is until every conversation took its next step, "
            "including the RIS round trip after commit (transaction 2) on the simulated RIS.",
            "",
            "| reply | webhooks | achieved/s | p50 ms | p99 ms | max ms | settled s | HTTP statuses |",
            "|---|---|---|---|---|---|---|---|",
            round_row("YES → location menu (RIS location query)", rounds["YES"]),
            round_row("1-3 → slot menu (RIS slot query)", rounds["1"]),
            round_row(f"1-3 → booking, {args.herd} at once (RIS booking, SIU^S12)", rounds["2"]),
            "",
            f"{r['booked']} bookings confirmed by the simulated RIS. Everyone is offered the same "
            "next three times per location, so most of the simultaneous picks collide: those "
            "patients get the RIS's refusal as fresh times (`slot_taken`, one more RIS query), "
            "which is a full transition too. Conversation states afterwards: "
            + ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
            + ".",
            "",
            f"**The engine alone**: the daemon in the benchmark's own process (uvloop, pinned to "
            f"core {DAEMON_CPU}, texts still sent to the double by its outbox sender), "
            f"`on_inbound_text` called with {engine['concurrency']} calls in flight, "
            f"{args.engine_patients} conversations per round. A call returns after "
            "transaction 1; `settled/s` includes the RIS calls after commit and transaction 2.",
            "",
            "| reply | calls | transitions/s | settled/s | p50 ms | p99 ms | max ms | CPU ms/reply |",
            "|---|---|---|---|---|---|---|---|",
            *(engine_row(name, res) for name, res in engine["rounds"].items()),
            "",
            "States afterwards: "
            + ", ".join(f"{k} {v}" for k, v in sorted(engine["states"].items()))
            + ".",
            "",
            "**Where the time goes.** The daemon runs on one core, and the CPU columns show that "
            "core is the limit: 1000 ms divided by the CPU per order (or reply) is about the "
            "throughput measured. That CPU covers all the daemon does for an order — reading the "
            "frame, parsing the ORM, sealing, the intake's statements, building and recording the "
            "ACK — and the consent request's send through the Twilio SDK by the outbox sender in "
            "the same process. At this rate PostgreSQL is not the limit yet (its CPU per order "
            "is in the table): a transaction of one "
            f"insert reaches {r['baseline'][1]:.0f}/s and one of ten inserts "
            f"{r['baseline'][10]:.0f}/s over 8 connections on the same server in the same run. "
            "Each statement round trip costs the daemon CPU too (a send and a wake-up per "
            "statement, profiled as the largest single item): an order takes 7 — begin; the "
            "inbound lock with the look for an earlier ACK of the same sender and MSH-10 and the "
            "record of this one with the ACK of a plain accept (one function call, migration "
            "0022); the order insert; the phone lock with the phone's consent and live "
            "conversation (one call); the outbox row (its id reserved ahead, 32 per round trip: "
            "storage/sms_outbox.py OutboxIds); the conversation "
            "row with its audit rows in one statement; commit (the pool's reset query on release "
            "is skipped: storage/db.py). The outbox sender adds one statement per batch of texts "
            "for the claim (durable by itself: storage/sms_outbox.py) and one per "
            "text for its outcome. A second daemon on "
            "the same database (docs/deploy.md, SO_REUSEPORT) adds a core's worth where one is "
            "free.",
            "",
            f"Targets: ≥ 1,000 orders/s over 8 connections with p99 < 20 ms: **"
            f"{'met' if orders_ok else 'NOT met'}** ({eight['per_second']:.0f}/s, p99 "
            f"{eight['p99_ms']:.1f} ms). ≥ 500 transitions/s with p99 < 20 ms: **"
            f"{'met' if texts_ok else 'NOT met'}** (engine, rounds without the booking herd: slowest {slowest:.0f}/s, "
            f"worst p99 {worst:.1f} ms).",
            "",
        ]
    )


def ceiling_lines(r: dict[str, Any]) -> list[str]:
    """The one-commit ceiling, measured right after the 8-connection run, and intake against it."""
    ceiling, eight = r["ceiling"], r["eight"]
    ratio = eight["per_second"] / ceiling["per_second"]
    a = ceiling["asyncpg"]
    lines = [
        f"**The one-commit ceiling** on the same PostgreSQL, right after: single-INSERT "
        f"transactions of {CEILING_ROW_BYTES} bytes at 8 clients, each its own commit "
        f"(fsync {a['fsync']}, synchronous_commit {a['synchronous_commit']}), the client pinned "
        f"to core {LOAD_CPU}: an asyncpg loop (prepared statement, uvloop) {a['per_second']:,.0f}/s "
        f"(p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms)",
    ]
    if "pgbench" in ceiling:
        lines[0] += f", pgbench {ceiling['pgbench']['per_second']:,.0f}/s"
    lines[0] += (
        f". Ceiling = the better, {ceiling['per_second']:,.0f} commits/s ({ceiling['best']})."
    )
    lines += [
        "",
        f"Durable intake at 8 connections: {eight['per_second']:,.0f} orders/s = **{ratio:.1%} of "
        f"the ceiling** (target ≥ 20%, issue 16: {'met' if ratio >= 0.2 else 'NOT met'}), p99 "
        f"{eight['p99_ms']:.1f} ms (target < 20 ms: {'met' if eight['p99_ms'] < 20 else 'NOT met'}"
        f"), daemon CPU {eight['cpu_ms']:.2f} ms per order.",
    ]
    if "pg_cpu_ms" in eight:
        # Why the target is out of reach here: the CPU it needs, in cores, from the measured costs.
        target = 0.2 * ceiling["per_second"]
        daemon_cores = target * eight["cpu_ms"] / 1000
        pg_cores = target * eight["pg_cpu_ms"] / 1000
        lines += [
            "",
            f"What 20% would take: {target:,.0f} orders/s at the measured costs needs "
            f"{daemon_cores:.1f} cores of daemon ({eight['cpu_ms']:.2f} ms each; one process uses "
            f"one) and {pg_cores:.1f} of PostgreSQL ({eight['pg_cpu_ms']:.2f} ms each), "
            f"{daemon_cores + pg_cores:.1f} cores in all on a machine of {os.cpu_count()}, "
            "where the load generator and the Twilio double need some too. The ceiling's single "
            "INSERT costs PostgreSQL a fraction of an order's statements, and its client does "
            "nothing else; the order is held to it as the issue asks, but on this machine the "
            "daemon's core is reached first, and PostgreSQL's next. The p99 follows the rate: "
            "with one order in flight per connection, the mean latency is 8 connections ÷ the "
            f"rate (Little's law; {8000 / eight['per_second']:.1f} ms here against a measured p50 "
            f"of {eight['p50_ms']:.1f} ms), so a p99 under 20 ms needs well over 400 orders/s "
            "from the one core.",
        ]
    return lines


def record_targets(r: dict[str, Any]) -> None:
    """The targets' figures for the summary (bench/_results.py)."""
    eight, ceiling = r["eight"], r["ceiling"]
    _results.record(
        "16.2-ceiling",
        f"{eight['per_second']:,.0f} orders/s vs {ceiling['per_second']:,.0f} commits/s "
        f"({ceiling['best']}); daemon CPU {eight['cpu_ms']:.2f} ms/order, PostgreSQL "
        f"{eight.get('pg_cpu_ms', 0):.2f} ms/order",
        eight["per_second"] / ceiling["per_second"],
    )
    _results.record("16.2-p99", f"{eight['p99_ms']:.1f} ms", eight["p99_ms"] / 20)
    _results.record("5-orders", f"{eight['per_second']:,.0f} orders/s", eight["per_second"] / 1000)
    if "engine" in r:
        judged = [x for name, x in r["engine"]["rounds"].items() if "booking" not in name]
        slowest = min(x["per_second"] for x in judged)
        worst = max(x["p99_ms"] for x in judged)
        _results.record("5-transitions", f"{slowest:,.0f}/s (engine)", slowest / 500)
        _results.record("5-transitions-p99", f"{worst:.1f} ms (engine)", worst / 20)


def write_section(text: str) -> None:
    _docs.write_section(SECTION, text, DOC)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intake")
    parser.add_argument("--seconds", type=float, default=8.0, help="per intake run")
    parser.add_argument("--patients", type=int, default=1000, help="webhook conversations")
    parser.add_argument("--rate", type=float, default=500.0, help="webhooks per second")
    parser.add_argument("--engine-patients", type=int, default=1500, help="in-process rounds")
    parser.add_argument("--concurrency", type=int, default=8, help="in-process calls in flight")
    parser.add_argument("--herd", type=int, default=200, help="patients in the booking round")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    parser.add_argument(
        "--orders-only", action="store_true", help="orders and the ceiling only (implies --no-docs)"
    )
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores (daemon and load generator are pinned apart)")
    work = Path(tempfile.mkdtemp(prefix="radsched-bench-intake-"))
    work.chmod(0o711)  # the embedded server may run as another user under root
    try:
        load_before = os.getloadavg()[0]
        result = asyncio.run(bench(args, work))
        result["load"] = (load_before, os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1), file=sys.stderr)
    record_targets(result)
    _results.save("intake")
    if args.orders_only:
        print("\n".join(ceiling_lines(result)))
        return
    text = render(result, args)
    print(text)
    if not args.no_docs:
        write_section(text)
        print(f"written to {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
