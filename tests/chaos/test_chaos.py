"""A short chaos run in ``make test``: a real daemon, a real database, real sockets, scheduled faults.

About 25 seconds of orders and patient replies while the daemon is SIGKILLed three times, PostgreSQL
is restarted once and the RIS and both EMRs misbehave (dropped mid-frame, stalled past the timeout,
AE/AR, junk). Then every fault stops, the system settles (bounded poll) and the invariants of
docs/reliability.md must hold. The seed is fixed so the schedule is the same on every run;
``CHAOS_SEED=N`` replays another one. ``make soak`` runs the long version.
"""

from __future__ import annotations

import os

import pytest

from tests.chaos.run import Config, run

DEFAULT_SEED = 20261127

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def test_a_short_day_of_traffic_under_faults_keeps_every_invariant() -> None:
    seed = int(os.environ.get("CHAOS_SEED", DEFAULT_SEED))
    result = await run(
        Config(
            seed=seed,
            duration=25,
            kills=3,
            pg_restarts=1,
            orders_per_s=2.0,
            peer_fault_every=1.5,
            settle_timeout=45,
            restart_at_end=True,
        )
    )
    report = f"seed {seed}\n{result.table()}\n" + "\n".join(
        f"{k}: {v}" for k, v in result.figures.items()
    )
    print(report)
    assert result.kills >= 3 and result.pg_restarts == 1, report
    assert not result.unexpected_exits, f"daemon exited on its own: {result.unexpected_exits}"
    failed = [c for c in result.checks if not c.holds]
    assert not failed, report
