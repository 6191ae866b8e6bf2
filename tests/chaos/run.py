"""One chaos run: traffic and scheduled faults for ``duration`` seconds, then settle, then check.

``make test`` runs a short one (tests/chaos/test_chaos.py); ``make soak`` a long one
(``python -m tests.chaos.soak``). Both print the seed; ``CHAOS_SEED=N`` replays a schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.invariants import Check, check, drained, figures
from tests.chaos.patients import Patients
from tests.chaos.peers import OrderFeed, new_order
from tests.chaos.schedule import Fault, Injector, plan
from tests.chaos.world import PUBLIC_URL, World, world


@dataclass(frozen=True)
class Config:
    seed: int
    duration: float = 30.0
    kills: int = 3
    pg_restarts: int = 1
    orders_per_s: float = 1.5
    peer_fault_every: float = 2.0
    disabled_share: float = 0.1
    """Share of orders for a modality not offered by text (deferred with a reason)."""
    settle_timeout: float = 60.0
    restart_at_end: bool = False
    """One more SIGKILL after the faults: its start-up pass resolves pending bookings at once instead
    of at the resolver's next 30 s round (keeps the short run short; the soak waits the real way)."""


@dataclass
class Result:
    config: Config
    checks: list[Check]
    figures: dict[str, str]
    injected: Counter[str]
    orders: int
    kills: int
    pg_restarts: int
    unexpected_exits: list[str]
    failed_starts: int
    settle_seconds: float
    wall_seconds: float
    rss_samples_kb: list[tuple[float, int]] = field(default_factory=list)
    rss_at_kill_kb: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.holds for c in self.checks)

    def table(self) -> str:
        rows = ["| invariant | figures | holds |", "|---|---|---|"]
        rows += [
            f"| {c.name} | {c.figures} | {'yes' if c.holds else '**NO**'} |" for c in self.checks
        ]
        return "\n".join(rows)


async def run(config: Config) -> Result:
    rng = random.Random(config.seed)
    started = time.monotonic()
    async with world() as w:
        await w.start_daemon()
        feed = OrderFeed(w.mllp_address)
        patients = Patients(w.twilio, PUBLIC_URL, w.http_base, random.Random(rng.random()))
        injector = Injector(w, Counter())
        faults = plan(
            rng,
            duration=config.duration,
            kills=config.kills,
            pg_restarts=config.pg_restarts,
            peer_fault_every=config.peer_fault_every,
        )
        background = [
            asyncio.create_task(feed.run(), name="order-feed"),
            asyncio.create_task(patients.run(), name="patients"),
            asyncio.create_task(w.watch_daemon(), name="watch-daemon"),
        ]
        rss: list[tuple[float, int]] = []
        try:
            t0 = time.monotonic()
            sent = await _traffic(config, rng, w, feed, patients, injector, faults, t0, rss)
            w.clear_faults()
            if config.restart_at_end:
                await w.kill_daemon()
            settle_started = time.monotonic()
            unsettled = await _settle(w, feed, patients, config.settle_timeout)
            settle_seconds = time.monotonic() - settle_started
            checks = [
                Check(
                    f"everything settled within {config.settle_timeout:.0f}s after the faults",
                    f"{settle_seconds:.1f}s"
                    + (f"; still moving: {unsettled}" if unsettled else ""),
                    unsettled is None,
                ),
                *await check(w, feed, patients, sent),
            ]
            extra = await figures(w, feed, patients)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await patients.aclose()
        return Result(
            config,
            checks,
            extra,
            injector.injected,
            sent,
            w.kills,
            w.pg_restarts,
            w.unexpected_exits,
            w.failed_starts,
            settle_seconds,
            time.monotonic() - started,
            rss,
            w.rss_at_kill_kb,
        )


async def _traffic(
    config: Config,
    rng: random.Random,
    w: World,
    feed: OrderFeed,
    patients: Patients,
    injector: Injector,
    faults: list[Fault],
    t0: float,
    rss: list[tuple[float, int]],
) -> int:
    """Submit orders at the configured rate and apply faults on schedule until ``duration``."""
    pending = list(faults)
    running: set[asyncio.Task[None]] = set()
    n = 0
    next_order = t0
    next_sample = t0
    while (now := time.monotonic() - t0) < config.duration:
        while pending and pending[0].at <= now:
            fault = pending.pop(0)
            task = asyncio.create_task(injector.apply(fault))
            running.add(task)
            task.add_done_callback(running.discard)
        while next_order <= time.monotonic():
            order = new_order(rng, n, disabled_share=config.disabled_share)
            patients.expect(order.phone)
            feed.submit(order)
            n += 1
            next_order += rng.expovariate(config.orders_per_s)
        if time.monotonic() >= next_sample:
            rss.append((round(now, 1), w.daemon_rss_kb()))
            next_sample += 5.0
        await asyncio.sleep(0.05)  # the scheduler's tick, not a wait for the system under test
    # Let windows that are open close (stalls resume, NAKs clear) before settling.
    await asyncio.gather(*running, return_exceptions=True)
    return n


async def _settle(w: World, feed: OrderFeed, patients: Patients, timeout: float) -> str | None:
    """Bounded poll until nothing moves anywhere (twice in a row); else what still moves."""
    deadline = time.monotonic() + timeout
    quiet = 0
    moving: str | None = "not checked"
    while quiet < 2:
        if time.monotonic() > deadline:
            return moving
        await asyncio.sleep(0.25)
        with contextlib.suppress(OSError):
            moving = await drained(w, feed, patients)
            quiet = quiet + 1 if moving is None else 0
    return None
