"""``python -m bench.console``: the admin console's pages on a big database, beside ``/readyz``.

A real (embedded) PostgreSQL is seeded with a year of metadata — ``--audit-rows`` SMS audit rows (the
funnel's source, 1,000,000 by default), ``--messages`` inbound HL7 log rows (100,000) and as many orders
as conversations — and the console and the health endpoint are served by aiohttp on loopback, as the
daemon serves them. One logged-in operator asks each page ``--requests`` times in turn; the time per
page is the client's (loopback adds well under a millisecond). Every listing query the pages run is
EXPLAINed and must read its big table through an index: the bench fails otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from pydantic import SecretStr

SECTION = "## Admin console pages on a big database"
PAGES = (("overview", "/"), ("funnel", "/funnel"), ("messages", "/messages"), ("audit", "/audit"))
PASSWORD = "bench console password"
PHI_KEY = "c" * 64
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def seed(conn: asyncpg.Connection, *, audit_rows: int, messages: int) -> None:
    """A year of metadata spread evenly, newest now (the pages' default windows are 30 days)."""
    sessions = max(1, audit_rows // 10)
    await conn.execute(
        """
        INSERT INTO sms_audit_log (occurred_at, phone_hash, message_type, direction, session_id,
                                   modality, outcome)
        SELECT now() - (g % $2) * (interval '365 days' / $2) - (g / $2) * interval '1 minute',
               md5((g % $2)::text),
               (ARRAY['order_received','consent_request','consent_granted','location_menu',
                      'slot_menu','booking_requested','booked','confirmation','consent_revoked',
                      'deferred'])[1 + g / $2],
               'system',
               md5((g % $2)::text)::uuid,
               (ARRAY['CT','MR','US','CR','MG'])[1 + (g % $2) % 5],
               'ok'
          FROM generate_series(0, $1 - 1) AS g
        """,
        audit_rows,
        sessions,
    )
    await conn.execute(
        """
        INSERT INTO orders (id, order_key, source, modality, state, deferred_reason, received_at,
                            correlation_id)
        SELECT md5('o' || g)::uuid, md5('o' || g), 'mllp', (ARRAY['CT','MR','US','CR','MG'])[1 + g % 5],
               CASE WHEN g % 7 = 0 THEN 'deferred' ELSE 'ended' END,
               CASE WHEN g % 7 = 0 THEN 'no_mobile' END,
               now() - g * (interval '365 days' / $1), 'bench'
          FROM generate_series(0, $1 - 1) AS g
        """,
        sessions,
    )
    await conn.execute(
        """
        INSERT INTO inbound_messages (sender, control_id, message_type, received_at, ack_code,
                                      ack_payload, correlation_id)
        SELECT 'SYNAPSE^RAD', 'MSG' || g, 'ORM^O01', now() - g * (interval '365 days' / $1),
               CASE WHEN g % 50 = 0 THEN 'AE' ELSE 'AA' END, '\\x00'::bytea, 'bench'
          FROM generate_series(0, $1 - 1) AS g
        """,
        messages,
    )
    await conn.execute("ANALYZE")


async def plans(conn: asyncpg.Connection) -> dict[str, str]:
    """The plan's access path for the big table of each listing query the pages run."""
    from radsched.storage import console as store

    now = datetime.now(UTC)
    month = now - timedelta(days=30)
    queries: dict[str, tuple[str, tuple[object, ...]]] = {
        "message log, newest page": (store._INBOUND, (None, None, None, None, None, 50, 0)),
        "message log, by MSH-10": (store._INBOUND, ("MSG4242", None, None, None, None, 50, 0)),
        "message log, a day": (
            store._INBOUND,
            (None, None, None, now - timedelta(days=2), now - timedelta(days=1), 50, 0),
        ),
        "funnel, audit counts": (store._FUNNEL_AUDIT, (month, now, "day", "UTC")),
        "funnel, orders": (store._FUNNEL_ORDERS, (month, now, "day", "UTC")),
        "funnel, median time to book": (store._FUNNEL_MEDIAN, (month, now, "day", "UTC")),
    }
    out: dict[str, str] = {}
    for name, (query, args) in queries.items():
        plan = await store.explain(conn, query, *args)
        scans = re.findall(
            r"(Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan)(?: Backward)?"
            r"(?: using \S+)? on (\w+)",
            plan,
        )
        big = [s for s in scans if s[1] in ("sms_audit_log", "inbound_messages", "orders")]
        if any(kind == "Seq Scan" for kind, _ in big) or not big:
            raise SystemExit(f"{name}: no index used on the big table:\n{plan}")
        out[name] = ", ".join(sorted({f"{kind} on {table}" for kind, table in big}))
    return out


async def serve(dsn: str, work: Path) -> tuple[list[web.AppRunner], str, str, Any]:
    from radsched.console import ConsoleDeps, build_console_app
    from radsched.console.component import CommandOutbox, settings_rows
    from radsched.console.session import derive_cookie_key
    from radsched.console.users import add_user
    from radsched.metrics import Metrics
    from radsched.privacy import PhiBox
    from radsched.rest.health import Readiness, add_health_routes
    from radsched.settings import Settings
    from radsched.storage.db import Database

    settings = Settings(
        data_dir=work / "data",
        database_url=SecretStr(dsn),
        phone_hash_key=SecretStr("a" * 64),
        phi_key=SecretStr(PHI_KEY),
    )
    db = await Database.connect(dsn, registry=None)
    readiness = Readiness()

    async def database() -> str | None:
        await db.ping()
        return None

    readiness.add("database", database)
    deps = ConsoleDeps(
        db=db,
        cookie_key=derive_cookie_key(PHI_KEY),
        readiness=readiness.run,
        outbox=CommandOutbox(settings),
        settings_rows=settings_rows(settings),
        modality_defaults=settings.modality_defaults,
        phi=PhiBox.from_secret(PHI_KEY),
        destinations=[],
        clock=lambda: datetime.now(UTC),
    )
    async with db.transaction("bench.user") as conn:
        await add_user(
            conn, "bench", "operator", password=PASSWORD, by="bench", now=datetime.now(UTC)
        )
    health = web.Application()
    add_health_routes(health, readiness, Metrics())
    runners = []
    urls = []
    for app in (build_console_app(deps), health):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        runners.append(runner)
        urls.append(f"http://{host}:{port}")
    return runners, urls[0], urls[1], db


async def timed(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.get(url, allow_redirects=False) as resp:
            await resp.read()
            if resp.status != 200:
                raise SystemExit(f"{url}: HTTP {resp.status}")
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from radsched.storage import embedded
    from radsched.storage.migrate import migrate

    pg = await embedded.start(work / "pg")
    try:
        dsn = pg.dsn()
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        t0 = time.perf_counter()
        await seed(conn, audit_rows=args.audit_rows, messages=args.messages)
        seeded_s = time.perf_counter() - t0
        access = await plans(conn)
        await conn.close()
        runners, console_url, health_url, db = await serve(dsn, work)
        try:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                async with session.get(console_url + "/login") as resp:
                    token = CSRF.search(await resp.text())
                assert token is not None
                async with session.post(
                    console_url + "/login",
                    data={"csrf": token[1], "name": "bench", "password": PASSWORD},
                    allow_redirects=False,
                ) as resp:
                    if resp.status != 303:
                        raise SystemExit(f"login failed: HTTP {resp.status}")
                await timed(session, console_url + "/", 3)  # warm the pool and the templates
                times = {
                    name: await timed(session, console_url + path, args.requests)
                    for name, path in PAGES
                }
                times["/readyz"] = await timed(session, health_url + "/readyz", args.requests)
        finally:
            for runner in runners:
                await runner.cleanup()
            await db.close()
        return {"seeded_s": seeded_s, "plans": access, "times": times}
    finally:
        await embedded.stop(pg)


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    from bench.mllp.__main__ import machine

    readyz = statistics.median(r["times"]["/readyz"])
    lines = [
        SECTION,
        "",
        "Reproduce: `.venv/bin/python -m bench.console` (options: `--audit-rows`, `--messages`, "
        "`--requests`, `--no-docs`).",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; the machine "
        "is shared, so compare rows of the same run.",
        f"A year of metadata: {args.audit_rows:,} SMS audit rows, {args.audit_rows // 10:,} orders, "
        f"{args.messages:,} inbound HL7 log rows (seeded in {r['seeded_s']:.0f} s). One logged-in "
        f"operator asks each page {args.requests} times in turn (pages' default windows: the last "
        "30 days, 50 rows a page); time per page on loopback, `/readyz` of the same process beside.",
        "",
        "| page | p50 ms | p99 ms | p50 ÷ `/readyz` p50 |",
        "|---|---:|---:|---:|",
    ]
    for name, values in r["times"].items():
        p50 = statistics.median(values)
        lines.append(f"| {name} | {p50:.1f} | {pct(values, 0.99):.1f} | {p50 / readyz:.1f}× |")
    lines += [
        "",
        "Every listing query reads its big table through an index (EXPLAIN, checked by the bench):",
        "",
    ]
    lines += [f"- {name}: {path}" for name, path in r["plans"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radsched-bench-console-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        result = asyncio.run(bench(args, work))
    text = render(result, args)
    print(text)
    print(json.dumps({k: v for k, v in result.items() if k != "times"}, indent=1), file=sys.stderr)
    if not args.no_docs:
        from bench._docs import write_section

        write_section(SECTION, text)


if __name__ == "__main__":
    main()
