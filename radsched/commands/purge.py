"""``radsched purge``: run the retention job now and print what it removed.

Works beside running daemons: it waits for the singleton lock if a daemon is purging at that moment,
then runs the same policy the daily job runs (radsched/retention.py) and records the run, so the
daemons' daily timers count from now.
"""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from radsched.settings import Settings

__all__ = ["purge_now", "register"]


async def purge_now(settings: Settings, now: datetime | None = None) -> dict[str, int]:
    from radsched.retention import policy_from, run_job
    from radsched.storage.connect import storage

    async with AsyncExitStack() as stack:
        db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
        report = await run_job(
            db,
            now or datetime.now(UTC),
            policy_from(settings.duplicate_window_days),
            wait=True,
            only_if_due=False,
        )
    return report.removed


def _run(args: argparse.Namespace) -> int:
    from radsched.cli import run_async

    async def go(settings: Settings) -> int:
        removed = await purge_now(settings)
        if args.json:
            print(json.dumps(removed, indent=1))
        else:
            width = max(map(len, removed), default=0)
            for item, count in removed.items():
                print(f"{item:<{width}}  {count}")
        return 0

    return run_async(go)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "purge", help="run the retention job now (it also runs daily) and print what it removed"
    )
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.set_defaults(func=_run)
