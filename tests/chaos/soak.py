"""``make soak``: the long chaos run; prints the invariants and writes them into docs/reliability.md.

    python -m tests.chaos.soak [--duration 600] [--kills 50] [--seed N] [--write-docs]

Defaults: 10 minutes, 50 SIGKILLs, one PostgreSQL restart every two minutes, a peer fault every
1.5 s on average. ``--write-docs`` replaces the "Latest soak" section of docs/reliability.md and the
soak line of the "## Memory" section of docs/performance.md. Exit status 1 if an invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.chaos.run import Config, Result, run
from tests.chaos.world import new_seed

ROOT = Path(__file__).resolve().parents[2]
RELIABILITY = ROOT / "docs" / "reliability.md"
PERFORMANCE = ROOT / "docs" / "performance.md"
SOAK_START = "<!-- soak:start -->"
SOAK_END = "<!-- soak:end -->"
MEMORY_START = "<!-- soak-memory:start -->"
MEMORY_END = "<!-- soak-memory:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs during the run")
    parser.add_argument("--pg-restarts", type=int, default=0, help="default: one per 2 minutes")
    parser.add_argument("--orders-per-s", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0, help="default: CHAOS_SEED or random")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    seed = args.seed or new_seed()
    print(f"chaos soak: seed {seed} (replay with --seed {seed})", flush=True)
    config = Config(
        seed=seed,
        duration=args.duration,
        kills=args.kills,
        pg_restarts=args.pg_restarts or max(1, round(args.duration / 120)),
        orders_per_s=args.orders_per_s,
        peer_fault_every=1.5,
        settle_timeout=180.0,
    )
    result = asyncio.run(run(config))
    text = render(result)
    print(text)
    if args.write_docs:
        replace_between(RELIABILITY, SOAK_START, SOAK_END, text)
        replace_between(PERFORMANCE, MEMORY_START, MEMORY_END, memory_line(result))
        print(f"wrote {RELIABILITY.relative_to(ROOT)} and {PERFORMANCE.relative_to(ROOT)}")
    return 0 if result.ok and not result.unexpected_exits else 1


def render(result: Result) -> str:
    c = result.config
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    injected = ", ".join(f"{k} {v}" for k, v in sorted(result.injected.items()))
    lines = [
        f"Run of {when}: `python -m tests.chaos.soak --duration {c.duration:.0f} "
        f"--kills {c.kills} --seed {c.seed}` ({result.wall_seconds:.0f} s wall clock, "
        f"settled {result.settle_seconds:.1f} s after the last fault).",
        "",
        f"- orders sent: {result.orders}; daemon SIGKILLs: {result.kills}; "
        f"PostgreSQL restarts: {result.pg_restarts}; daemon exits on its own: "
        f"{len(result.unexpected_exits)}; failed start-ups (database down): {result.failed_starts}",
        f"- faults injected: {injected}",
        "",
        result.table(),
        "",
        *(f"- {k}: {v or '-'}" for k, v in result.figures.items()),
    ]
    lines += [f"- unexpected exit: `{e[:200]}`" for e in result.unexpected_exits]
    return "\n".join(lines)


def memory_line(result: Result) -> str:
    samples = [kb for _, kb in result.rss_samples_kb if kb]
    if not result.rss_at_kill_kb or not samples:
        return "No RSS samples (run too short)."
    at_kill = sorted(result.rss_at_kill_kb)
    return (
        f"Over the {result.config.duration:.0f} s soak (seed {result.config.seed}), the daemon's RSS "
        f"sampled every 5 s: min {min(samples) / 1024:.1f} MB, median "
        f"{statistics.median(samples) / 1024:.1f} MB, max {max(samples) / 1024:.1f} MB; at each of "
        f"the {len(at_kill)} SIGKILLs: median {statistics.median(at_kill) / 1024:.1f} MB, max "
        f"{at_kill[-1] / 1024:.1f} MB. Each daemon life is short (a kill every "
        f"~{result.config.duration / max(result.config.kills, 1):.0f} s), so growth within one "
        "long life is measured by `python -m bench.memory life` (above)."
    )


def replace_between(path: Path, start: str, end: str, text: str) -> None:
    content = path.read_text()
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(content):
        raise SystemExit(f"{path}: markers {start} … {end} not found")
    path.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content))


if __name__ == "__main__":
    sys.exit(main())
