"""The one-commit ceiling of a PostgreSQL server: how many single-INSERT transactions per second it
commits at N clients, fsync and ``synchronous_commit`` as configured (on, as in production).

``python -m bench.intake.ceiling SPEC.json`` where SPEC has ``dsn``, ``clients``, ``seconds`` and
``bytes`` (the row's size, about an order's). Each client holds one connection and repeats one
prepared ``INSERT`` outside any explicit transaction, so each is its own commit, waiting for the
answer before the next (closed loop, like the intake). Runs under uvloop; prints one JSON line with
commits/s and latency percentiles, and the server's ``fsync`` / ``synchronous_commit`` settings.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from bench.intake.loadgen import _percentile, run_spec

TABLE = "bench_commit_ceiling"


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    dsn, clients, seconds = spec["dsn"], int(spec["clients"]), float(spec["seconds"])
    body = "x" * int(spec["bytes"])
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial, body text)")
        settings = {
            name: await setup.fetchval(f"SHOW {name}") for name in ("fsync", "synchronous_commit")
        }
    finally:
        await setup.close()
    conns = [await asyncpg.connect(dsn) for _ in range(clients)]
    latencies: list[float] = []
    warm_until = time.perf_counter() + 0.5
    deadline = warm_until + seconds

    async def client(conn: asyncpg.Connection) -> None:
        insert = await conn.prepare(f"INSERT INTO {TABLE} (body) VALUES ($1)")
        while (now := time.perf_counter()) < deadline:
            await insert.fetch(body)
            if now >= warm_until:
                latencies.append(time.perf_counter() - now)

    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    latencies.sort()
    return {
        "clients": clients,
        "commits": len(latencies),
        "per_second": len(latencies) / seconds,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        **settings,
    }


def main() -> None:
    run_spec(run)


if __name__ == "__main__":
    main()
