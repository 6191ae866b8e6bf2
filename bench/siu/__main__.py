"""SIU throughput from the outbox to ACKing EMR peers, and draining a backlog after an outage.

``python -m bench.siu [--messages 10000] [--database-url DSN]``

Each scenario runs a real in-process daemon (``radsched.daemon.running``) on a fresh database, with
the EMR peer(s) in a separate process (``bench.siu.peer``) so the daemon has its own core:

- ``throughput-1``: N SIU^S12 rows committed in one transaction (a burst of bookings), then timed from
  commit to the last row marked delivered, one destination;
- ``throughput-4``: the same with N rows spread over four facilities routed to four destinations;
- ``backlog``: the EMR is down (connection refused) while N rows queue up and the sender backs off;
  then the EMR starts and we time from "EMR listening" to the last row delivered.

Rows are built by the real booking hook (SIU^S12 v2.5.1, sealed with PHI_KEY). Completion is read
from the database (rows in state 'delivered'), which includes the sender's write-back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr

from bench import _results
from radsched.daemon import Daemon, running
from radsched.settings import Settings
from radsched.storage import embedded
from radsched.storage.migrate import migrate
from tests.emr.helpers import booked  # the same booking the tests use

KEY = "c" * 64


@contextlib.contextmanager
def peer_process(ports: list[int]) -> Iterator[list[int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.siu.peer", *map(str, ports)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        bound = [int(p) for p in proc.stdout.readline().split()]
        yield bound
    finally:
        proc.kill()
        proc.wait()


def reserve_port() -> socket.socket:
    """A bound, not listening, socket: connections to its port are refused and nothing else (the
    daemon's own port-0 listeners included) can take the port until we close it for the EMR."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    name = "bench_siu_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path="/" + name))
    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await conn.close()
    try:
        yield dsn
    finally:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def settings(data_dir: Path, dsn: str, routes: str, **extra: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=SecretStr(dsn),
        http_listen="127.0.0.1:0",
        mllp_listen="127.0.0.1:0",
        phone_hash_key=SecretStr(KEY),
        phi_key=SecretStr(KEY),
        log_format="json",
        emr_routes=routes,
        **extra,
    )


async def enqueue(daemon: Daemon, count: int, facilities: list[str]) -> float:
    assert daemon.emr is not None
    started = time.perf_counter()
    async with daemon.db.transaction("bench.enqueue") as conn:
        for n in range(count):
            await daemon.emr.writer.on_booked(
                conn, booked(n, facility=facilities[n % len(facilities)])
            )
    return time.perf_counter() - started


async def wait_delivered(dsn: str, count: int, timeout: float = 600.0) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.perf_counter() + timeout
        while True:
            done = await conn.fetchval("SELECT count(*) FROM hl7_outbox WHERE state = 'delivered'")
            if done >= count:
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {done} of {count} delivered")
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def throughput(admin_dsn: str, count: int, destinations: int) -> dict[str, Any]:
    facilities = [f"F{i}" for i in range(destinations)]
    with peer_process([0] * destinations) as ports:
        routes = ",".join(f"F{i}=127.0.0.1:{p}" for i, p in enumerate(ports))
        async with fresh_database(admin_dsn) as dsn:
            data_dir = Path(tempfile.mkdtemp(prefix="bench-siu-"))
            try:
                async with running(settings(data_dir, dsn, routes)) as daemon:
                    enqueue_s = await enqueue(daemon, count, facilities)
                    committed, cpu = time.perf_counter(), time.process_time()
                    finished = await wait_delivered(dsn, count)
                    cpu = time.process_time() - cpu
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
    seconds = finished - committed
    return {
        "scenario": f"throughput-{destinations}",
        "messages": count,
        "destinations": destinations,
        "seconds": round(seconds, 3),
        "messages_per_s": round(count / seconds),
        # CPU the daemon's process spent per message while draining: the figure least disturbed by
        # other load on a shared machine (it does not count time spent waiting for a core).
        "daemon_cpu_us_per_message": round(cpu / count * 1e6),
        "enqueue_per_s": round(count / enqueue_s),
        "load_average": os.getloadavg()[0],
    }


async def backlog(admin_dsn: str, count: int) -> dict[str, Any]:
    placeholder = reserve_port()
    port = int(placeholder.getsockname()[1])
    routes = f"*=127.0.0.1:{port}"
    async with fresh_database(admin_dsn) as dsn:
        data_dir = Path(tempfile.mkdtemp(prefix="bench-siu-"))
        try:
            cfg = settings(data_dir, dsn, routes, emr_retry_initial_s=0.5, emr_retry_max_s=2.0)
            async with running(cfg) as daemon:
                await enqueue(daemon, count, ["HOSP"])
                await asyncio.sleep(3.0)  # the outage: the sender fails and backs off meanwhile
                placeholder.close()
                with peer_process([port]):
                    up = time.perf_counter()
                    first = await wait_delivered(dsn, 1)
                    finished = await wait_delivered(dsn, count)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "scenario": "backlog",
        "messages": count,
        "seconds_from_emr_up": round(finished - up, 3),
        "seconds_from_first_delivery": round(finished - first, 3),
        "note": "from EMR up includes the sender's backoff wait (EMR_RETRY_MAX_S=2)",
        "load_average": os.getloadavg()[0],
    }


@asynccontextmanager
async def admin_database(supplied: str | None) -> AsyncIterator[str]:
    if supplied:
        yield supplied
        return
    root = Path(tempfile.mkdtemp(prefix="bench-siu-pg-"))
    root.chmod(0o711)
    handle = await embedded.start(root / "pg")
    try:
        yield handle.dsn("postgres")
    finally:
        await embedded.stop(handle)
        shutil.rmtree(root, ignore_errors=True)


async def main(args: argparse.Namespace) -> None:
    async with admin_database(args.database_url) as admin_dsn:
        results = [
            await throughput(admin_dsn, args.messages, 1),
            await throughput(admin_dsn, args.messages, 4),
            await backlog(admin_dsn, args.messages),
        ]
    for result in results:
        print(json.dumps(result))
    one, _, late = results
    _results.record(
        "6-siu",
        f"{one['messages_per_s']:,} SIU/s ({one['daemon_cpu_us_per_message']} µs daemon CPU each)",
        one["messages_per_s"] / 1000,
    )
    _results.record(
        "6-backlog",
        f"{late['seconds_from_emr_up']:.1f} s for {late['messages']:,} "
        f"({late['seconds_from_first_delivery']:.1f} s from the first delivery)",
        late["seconds_from_emr_up"] / 20,
    )
    _results.save("siu")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.siu", description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("RADSCHED_TEST_DATABASE_URL"),
        help="admin DSN of a PostgreSQL that may CREATE DATABASE (default: an embedded one)",
    )
    import logging

    logging.basicConfig(level=logging.ERROR)
    args = parser.parse_args()
    # `radsched run` uses uvloop when it is installed; measure the same loop.
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args))
    else:
        uvloop.run(main(args))
