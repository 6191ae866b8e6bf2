"""Daemon memory: ``.venv/bin/python -m bench.memory [orders|life|all] [--orders N] [--seconds S]
[--no-docs]``.

The figure is the resident set size (VmRSS) of the ``radsched run`` process only: PostgreSQL is a
separate cluster (``RADSCHED_DATABASE_URL`` to an embedded cluster in a temp dir), so its processes
are never counted.

* ``orders``: the daemon on defaults otherwise (simulated RIS in-process, EMR sink, console SMS),
  pinned to core 0. RSS idle (10 s after READY), then after N unique ORM^O01 (default 100,000) sent
  over MLLP by ``bench/memory/sender.py`` on core 1 (8 connections, one message in flight each), then
  again after 10 s idle. The orders are for MR, which is not offered by text on defaults
  (``ENABLED_MODALITIES=CR,DX``): each is stored, sealed and ACKed, and its conversation is deferred to
  a phone call with one "please call" text (console SMS), so the SMS side stays cheap.
* ``life``: one daemon life under the chaos traffic of tests/chaos (orders, patients, RIS and EMR
  faults) with no kills and no database restart, RSS every 5 s for S seconds (default 300); growth is
  the last sample against the first sample after one minute of warm-up.

Writes the ``## Memory`` section's figures in docs/performance.md (between markers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import _results
from radsched.storage import embedded
from tests.chaos.run import Config, run
from tests.chaos.soak import replace_between
from tests.chaos.world import rss_kb
from tests.conftest import private_tmp
from tests.daemonproc import DaemonProcess

ROOT = Path(__file__).resolve().parents[2]
PERFORMANCE = ROOT / "docs" / "performance.md"
ORDERS_START, ORDERS_END = "<!-- memory-orders:start -->", "<!-- memory-orders:end -->"
LIFE_START, LIFE_END = "<!-- memory-life:start -->", "<!-- memory-life:end -->"
IDLE_TARGET_MB = 120
GROWTH_TARGET = 0.10


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f} MB"


async def orders(count: int) -> str:
    root = private_tmp("radsched-mem-")
    pg = await embedded.start(root / "pg")
    data_dir = root / "data"
    data_dir.mkdir(mode=0o700)
    daemon = DaemonProcess(
        data_dir,
        env={
            "RADSCHED_DATABASE_URL": pg.dsn(),
            "RADSCHED_PHONE_HASH_KEY": "e" * 64,
            "RADSCHED_PHI_KEY": "f" * 64,
            "RADSCHED_LOG_FORMAT": "json",
        },
    )
    try:
        await asyncio.to_thread(daemon.start)
        assert daemon.proc is not None
        pid = daemon.proc.pid
        os.sched_setaffinity(pid, {0})
        await asyncio.sleep(10)  # idle means idle: let start-up work finish before sampling
        idle = rss_kb(pid)
        host, port = daemon.addresses["mllp"]
        sender = [sys.executable, "-m", "bench.memory.sender", host, str(port), str(count), "8"]
        done = await asyncio.to_thread(
            subprocess.run,
            ["taskset", "-c", "1", *sender, "MR"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        sent = json.loads(done.stdout.strip().splitlines()[-1])
        after = rss_kb(pid)
        await asyncio.sleep(10)
        settled = rss_kb(pid)
    finally:
        await asyncio.to_thread(daemon.stop)
        await embedded.stop(pg)
        shutil.rmtree(root, ignore_errors=True)
    verdict = "under" if idle / 1024 < IDLE_TARGET_MB else "**over**"
    _results.record(
        "7-idle", f"{mb(idle)} ({mb(after)} after {count:,} orders)", idle / 1024 / IDLE_TARGET_MB
    )
    return (
        f"| idle, 10 s after READY | {mb(idle)} ({verdict} the {IDLE_TARGET_MB} MB target) |\n"
        f"| right after {count:,} MR orders over MLLP ({sent['per_s']}/s, ACKs {sent['codes']}) "
        f"| {mb(after)} |\n"
        f"| 10 s later, idle | {mb(settled)} |"
    )


async def life(seconds: float) -> str:
    result = await run(
        Config(
            seed=random.randrange(2**31),
            duration=seconds,
            kills=0,
            pg_restarts=0,
            orders_per_s=1.5,
            peer_fault_every=1.5,
            settle_timeout=180,
        )
    )
    samples = [(t, kb) for t, kb in result.rss_samples_kb if kb]
    warm = next((kb for t, kb in samples if t >= 60), samples[0][1])
    last = samples[-1][1]
    growth = (last - warm) / warm
    verdict = "within" if growth <= GROWTH_TARGET else "**beyond**"
    _results.record("7-growth", f"{mb(warm)} → {mb(last)} over {seconds:.0f} s", growth)
    peak = max(kb for _, kb in samples)
    holds = "all held" if result.ok else "**some failed** (see docs/reliability.md)"
    return (
        f"One daemon life of {seconds:.0f} s under the chaos traffic and peer faults "
        f"(seed {result.config.seed}, {result.orders} orders, no kills; invariants {holds}): "
        f"RSS {mb(warm)} after 1 min warm-up, {mb(last)} at the end, peak {mb(peak)}, median "
        f"{mb(int(statistics.median(kb for _, kb in samples)))}: growth {growth:+.1%} "
        f"({verdict} the {GROWTH_TARGET:.0%} target)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=("orders", "life", "all"))
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    if args.what in ("orders", "all"):
        table = asyncio.run(orders(args.orders))
        print(table, flush=True)
        if not args.no_docs:
            replace_between(PERFORMANCE, ORDERS_START, ORDERS_END, table)
    if args.what in ("life", "all"):
        text = asyncio.run(life(args.seconds))
        print(text, flush=True)
        if not args.no_docs:
            replace_between(PERFORMANCE, LIFE_START, LIFE_END, text)
    _results.save("memory")
    print(f"bench.memory: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
