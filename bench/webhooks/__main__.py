"""SMS webhook and outbox benchmark: ``.venv/bin/python -m bench.webhooks [--patients N] [--rate R]
[--seconds S] [--texts M] [--no-docs]``.

Real parts only: ``radsched run`` (a subprocess pinned to core 0) on an embedded PostgreSQL, its
texts going through the Twilio SDK to the Twilio double (``tests/twilio_double.py``, a subprocess
pinned to core 1), and a load generator (``bench/webhooks/loadgen.py``, pinned to core 1) posting
signed inbound-SMS webhooks. PostgreSQL is not pinned.

1. Seed: N orders through ``POST /api/orders``; each gets its consent request through the outbox.
2. HELP: each webhook is a full transition of a live conversation (lock and load the conversation,
   step, store it, enqueue the reply in ``sms_outbox``, audit, commit), plus the reply's send to the
   double by the outbox sender in the same daemon. Closed loop (max rate) and open loop at R/s.
3. YES: consent granted, ``FetchLocations`` on the simulated RIS after commit, location menu sent.
   Open loop at R/s, one YES per patient.
4. Outbox: M texts committed in one transaction, timed until the last was accepted by the double.

Writes the ``## SMS webhooks and outbox`` section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import _docs, _results

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "performance.md"
SECTION = "## SMS webhooks and outbox"
DAEMON_CPU, LOAD_CPU = 0, 1
PUBLIC_URL = "https://bench.example.org"
TWILIO_FROM = "+15005550006"


def numbers(count: int) -> list[str]:
    # 555-01xx is reserved for fiction but not "valid" to phonenumbers; 555-xxxx in 212 is.
    return [
        f"+1212{5550000 + n:07d}" if n < 9000 else f"+1646{5550000 + n:07d}" for n in range(count)
    ]


def pin(cpu: int) -> None:
    """Pin this process; children started afterwards inherit it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


async def wait_outbox_empty(dsn: str, timeout: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval(
            "SELECT count(*) FROM sms_outbox WHERE state IN ('pending', 'sending')"
        ):
            if time.monotonic() > deadline:
                rows = await conn.fetch(
                    "SELECT state, error_class, count(*) AS n, min(next_attempt_at) AS due "
                    "FROM sms_outbox GROUP BY 1, 2"
                )
                raise SystemExit(f"outbox did not drain in time: {[dict(r) for r in rows]}")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def seed(base: str, token: str, phones: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def order(n: int, phone: str) -> None:
            body = {"order_id": f"B{n:07d}", "mrn": f"M{n:07d}", "phone": phone, "modality": "CR"}
            async with sem, http.post(base + "/api/orders", json=body, headers=headers) as r:
                if r.status != 202 or (await r.json())["status"] != "accepted":
                    raise SystemExit(f"seeding failed: HTTP {r.status} {await r.text()}")

        await asyncio.gather(*(order(n, p) for n, p in enumerate(phones)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(data_root: Path) -> float:
    """CPU of this benchmark's PostgreSQL: the postmaster under ``data_root`` and its children
    (other clusters on the machine, such as a test suite's, are not counted)."""
    stats: dict[int, tuple[int, float]] = {}
    masters: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            stats[int(entry.name)] = (int(fields[1]), cpu)
            if str(data_root) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                masters.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return sum(cpu for pid, (ppid, cpu) in stats.items() if pid in masters or ppid in masters)


def loadgen(spec: dict[str, Any], work: Path, daemon_pid: int | None = None) -> dict[str, Any]:
    pg_root = work / "pg"
    before = (cpu_seconds(daemon_pid), postgres_cpu(pg_root)) if daemon_pid else (0.0, 0.0)
    path = work / f"spec-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(spec))
    out = subprocess.run(
        [sys.executable, "-m", "bench.webhooks.loadgen", str(path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if daemon_pid:
        result["daemon_cpu_ms"] = (cpu_seconds(daemon_pid) - before[0]) * 1000 / result["requests"]
        result["pg_cpu_ms"] = (postgres_cpu(pg_root) - before[1]) * 1000 / result["requests"]
    return result


async def outbox_throughput(dsn: str, phi_key: str, hash_key: str, count: int) -> float:
    from radsched.privacy import PhiBox, phone_hash
    from radsched.storage.sms_outbox import enqueue_text

    phi = PhiBox.from_secret(phi_key)
    key = bytes.fromhex(hash_key)
    phones = numbers(count)
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        async with conn.transaction():
            for phone in phones:
                await enqueue_text(
                    conn,
                    phi=phi,
                    to_e164=phone,
                    body="Lakeside Imaging: benchmark text.",
                    template_id="bench",
                    phone_hash=phone_hash(key, phone),
                    conversation_id=uuid.uuid4(),
                    correlation_id="bench",
                    now=now,
                )
        committed = time.time()
        await wait_outbox_empty(dsn, 300)
        last = await conn.fetchval(
            "SELECT max(sent_at) FROM sms_outbox WHERE template_id = 'bench' AND state = 'sent'"
        )
        sent = await conn.fetchval(
            "SELECT count(*) FROM sms_outbox WHERE template_id = 'bench' AND state = 'sent'"
        )
    finally:
        await conn.close()
    if sent != count:
        raise SystemExit(f"outbox: only {sent} of {count} texts sent")
    return float(count / max(1e-6, last.timestamp() - committed))


def start_double(account_sid: str, token: str, *options: str) -> tuple[subprocess.Popen[str], str]:
    """The Twilio double as a subprocess (``options``: its ``--rate``, ``--queue-seconds``)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.twilio_double",
            "--account-sid",
            account_sid,
            "--auth-token",
            token,
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "LISTENING":
        raise SystemExit("the Twilio double did not start")
    return proc, "http://" + line[1]


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from radsched.storage import embedded
    from tests.daemonproc import DaemonProcess

    pg = await embedded.start(work / "pg")
    double: subprocess.Popen[str] | None = None
    daemon: DaemonProcess | None = None
    try:
        admin = await asyncpg.connect(pg.dsn("postgres"))
        await admin.execute('CREATE DATABASE "bench"')
        await admin.close()
        dsn = pg.dsn("bench")
        account_sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        order_token = secrets.token_urlsafe(24)
        keys = {"phi": secrets.token_hex(32), "hash": secrets.token_hex(32)}
        pin(LOAD_CPU)
        double, double_url = start_double(account_sid, token)
        pin(DAEMON_CPU)
        data_dir = work / "data"
        data_dir.mkdir(mode=0o711)
        env = {
            "RADSCHED_DATABASE_URL": dsn,
            "RADSCHED_PHI_KEY": keys["phi"],
            "RADSCHED_PHONE_HASH_KEY": keys["hash"],
            "RADSCHED_ORDER_TOKENS": order_token,
            "RADSCHED_PUBLIC_URL": PUBLIC_URL,
            "RADSCHED_TWILIO_ACCOUNT_SID": account_sid,
            "RADSCHED_TWILIO_AUTH_TOKEN": token,
            "RADSCHED_TWILIO_FROM": TWILIO_FROM,
            "RADSCHED_TWILIO_API_URL": double_url,
            "RADSCHED_QUIET_HOURS": "",
            "RADSCHED_ENABLED_MODALITIES": "CR",
            "RADSCHED_PRACTICE_NAME": "Lakeside Imaging",
            "RADSCHED_SCHEDULING_PHONE": "(555) 010-0200",
            # Seeding is not what is measured; the per-phone SMS limit stays at its default
            # (each patient sends a handful of texts a minute here, under its burst).
            "RADSCHED_RATE_LIMIT_ORDERS_PER_S": "0",
            "BENCH_WEBHOOKS_DAEMON": "1",  # lets a profiler (py-spy) find this process
        }
        if os.environ.get("BENCH_PROFILE"):
            env.update(PYTHONPATH="/tmp/prof", PROFILE_OUT=os.environ["BENCH_PROFILE"])
        daemon = DaemonProcess(data_dir, env=env).start()
        pin(LOAD_CPU)
        base = daemon.url()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        phones = numbers(args.patients)
        t0 = time.perf_counter()
        await seed(base, order_token, phones)
        await wait_outbox_empty(dsn, 300)
        seeded_s = time.perf_counter() - t0
        spec = {
            "url": base,
            "public_url": PUBLIC_URL,
            "auth_token": token,
            "account_sid": account_sid,
            "to": TWILIO_FROM,
        }
        print(f"seeded {len(phones)} conversations in {seeded_s:.1f} s", file=sys.stderr)
        total = int(args.rate * args.seconds)
        rng = random.Random(7)
        warm = loadgen(
            {
                **spec,
                "concurrency": 8,
                "messages": [(rng.choice(phones), "HELP") for _ in range(300)],
            },
            work,
        )
        await wait_outbox_empty(dsn, 300)
        closed = loadgen(
            {
                **spec,
                "concurrency": args.concurrency,
                "messages": [(rng.choice(phones), "HELP") for _ in range(total)],
            },
            work,
            pid,
        )
        await wait_outbox_empty(dsn, 300)
        help_open = loadgen(
            {
                **spec,
                "rate": args.rate,
                "messages": [(rng.choice(phones), "HELP") for _ in range(total)],
            },
            work,
            pid,
        )
        await wait_outbox_empty(dsn, 300)
        print("HELP runs done; YES run", file=sys.stderr)
        yes_phones = phones[: min(len(phones), total)]
        t1 = time.perf_counter()
        yes_open = loadgen(
            {**spec, "rate": args.rate, "messages": [(p, "YES") for p in yes_phones]}, work, pid
        )
        await wait_outbox_empty(dsn, 300)
        yes_menus_s = time.perf_counter() - t1
        outbox_rate = await outbox_throughput(dsn, keys["phi"], keys["hash"], args.texts)
        metrics = await _scrape(base)
        return {
            "patients": args.patients,
            "seed_s": seeded_s,
            "warm": warm,
            "help_closed": closed,
            "help_open": help_open,
            "yes_open": yes_open,
            "yes_menus_s": yes_menus_s,
            "yes_count": len(yes_phones),
            "outbox_per_s": outbox_rate,
            "texts": args.texts,
            "metrics": metrics,
        }
    except SystemExit:
        if daemon is not None:  # show what the daemon said (no PHI in its log) before cleaning up
            problems = [
                line
                for line in daemon.log().splitlines()
                if '"level": "error"' in line or '"level": "warning"' in line
            ]
            print("\n".join(problems[-20:]), file=sys.stderr)
        raise
    finally:
        if daemon is not None:
            daemon.stop()
        if double is not None:
            double.terminate()
            double.wait(10)
        await embedded.stop(pg)


async def _scrape(base: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        text = await r.text()
    wanted = (
        "radsched_sms_sent_total",
        "radsched_sms_retries_total",
        "radsched_sms_failed_total",
        "radsched_sms_dead_total",
    )
    out: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    from bench.mllp.__main__ import machine

    def row(name: str, res: dict[str, Any], offered: str) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(res["statuses"].items()))
        return (
            f"| {name} | {offered} | {res['requests']} | {res['per_second']:.0f} | "
            f"{res['p50_ms']:.1f} | {res['p99_ms']:.1f} | {res['max_ms']:.1f} | "
            f"{res.get('daemon_cpu_ms', 0):.2f} | {res.get('pg_cpu_ms', 0):.2f} | {statuses} |"
        )

    p99 = r["help_open"]["p99_ms"]
    rate_ok = r["help_open"]["per_second"] >= 0.98 * args.rate
    verdict = "met" if rate_ok and p99 < 20 and args.rate >= 500 else "NOT met"
    return "\n".join(
        [
            SECTION,
            "",
            "Reproduce: `.venv/bin/python -m bench.webhooks` (options: `--patients`, `--rate`, "
            "`--seconds`, `--texts`, `--concurrency`, `--no-docs`).",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
            f"`radsched run` pinned to core {DAEMON_CPU} (HTTP, engine, outbox sender, simulated RIS "
            f"all in that one process); load generator and Twilio double pinned to core {LOAD_CPU}; "
            "embedded PostgreSQL unpinned (it competes for both cores). Every webhook is signed and "
            "verified; every reply text goes through the outbox and the real Twilio SDK to the double "
            "while the load runs.",
            "",
            f"1-minute load average {r['load'][0]} before, {r['load'][1]} after: other work on the "
            "machine shows in the latencies; the CPU columns (this daemon's CPU time and this "
            "benchmark's PostgreSQL's, during the run, per request) are the steadier figures.",
            "",
            f"Seeded {r['patients']} conversations (`POST /api/orders` + consent text each) in "
            f"{r['seed_s']:.1f} s.",
            "",
            "| scenario | offered load | requests | achieved/s | p50 ms | p99 ms | max ms "
            "| daemon CPU ms/req | PostgreSQL CPU ms/req | HTTP statuses |",
            "|---|---|---|---|---|---|---|---|---|---|",
            row(
                "HELP (transition + reply text), closed loop",
                r["help_closed"],
                f"{args.concurrency} in flight",
            ),
            row("HELP (transition + reply text), open loop", r["help_open"], f"{args.rate:.0f}/s"),
            row(
                "YES (consent, RIS location query after commit)",
                r["yes_open"],
                f"{args.rate:.0f}/s",
            ),
            "",
            f"Open-loop latency includes any queueing (requests start on schedule). The {r['yes_count']}"
            f" YES webhooks' location menus (a simulated-RIS query each) were all sent "
            f"{r['yes_menus_s']:.1f} s after the first YES.",
            "",
            f"Outbox: {r['texts']} texts committed in one transaction were all accepted by the Twilio "
            f"double at **{r['outbox_per_s']:.0f} texts/s** (claim batches of 16 with "
            "`FOR UPDATE SKIP LOCKED`, one Messages API request per text, outcome recorded per text).",
            "",
            f"CPU ceiling: at {r['help_closed'].get('daemon_cpu_ms', 0):.2f} ms of daemon CPU per HELP "
            f"(webhook, transition, reply send) one core sustains at most about "
            f"{1000 / max(0.01, r['help_closed'].get('daemon_cpu_ms', 0.01)):.0f} webhooks/s, before any "
            "queueing; PostgreSQL needs "
            f"{r['help_closed'].get('pg_cpu_ms', 0):.2f} ms per HELP on the other core.",
            "",
            f"Target ≥ 500 webhooks/s with p99 < 20 ms (open loop, HELP): **{verdict}** "
            f"({r['help_open']['per_second']:.0f}/s, p99 {p99:.1f} ms).",
            "",
        ]
    )


def write_section(text: str) -> None:
    _docs.write_section(SECTION, text, DOC)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks")
    parser.add_argument("--patients", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument(
        "--concurrency", type=int, default=64, help="closed-loop requests in flight"
    )
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores (daemon and load generator are pinned apart)")
    work = Path(tempfile.mkdtemp(prefix="radsched-bench-webhooks-"))
    work.chmod(0o711)  # the embedded server may run as another user under root
    load_before = f"{os.getloadavg()[0]:.2f}"
    try:
        result = asyncio.run(bench(args, work))
        result["load"] = (load_before, f"{os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1), file=sys.stderr)
    help_open = result["help_open"]
    offered = f"open loop at {args.rate:g}/s"
    _results.record(
        "5-webhooks", f"{help_open['per_second']:.0f}/s ({offered})", help_open["per_second"] / 500
    )
    _results.record(
        "5-webhooks-p99", f"{help_open['p99_ms']:.1f} ms ({offered})", help_open["p99_ms"] / 20
    )
    _results.save("webhooks")
    text = render(result, args)
    print(text)
    if not args.no_docs:
        write_section(text)
        print(f"written to {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
