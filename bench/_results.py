"""The targets' figures of one benchmark run, and the summary table ``python -m bench`` prints.

Each benchmark that measures a target calls :func:`record` where it already computes the figure and
:func:`save` at the end; that writes ``<results dir>/<bench>.json`` (``bench/.results/`` unless
``RADSCHED_BENCH_RESULTS`` names another; gitignored) with rows
``{target_id, what, measured, target, ratio, met, command}``. ``python -m bench`` removes a
benchmark's file before running it, so a benchmark that failed or did not run leaves its targets
"not measured", and it passes ``RADSCHED_BENCH_RUN`` so every file of one run carries that run's id.

:data:`TARGETS` is the list the summary is made of: what each target is, the bound its ratio is
held to, and the benchmark that measures it. The ratio is measured ÷ peer (``x``), measured ÷
ceiling (``%``), or, for an absolute limit, measured ÷ limit (``x`` too: below 1 is under it).
"""

from __future__ import annotations

import json
import operator
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "bench" / ".results"
SUMMARY_START, SUMMARY_END = "<!-- summary:start -->", "<!-- summary:end -->"

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Target:
    id: str
    issue: int
    what: str
    #: The target as a reader says it; ``op`` and ``bound`` are the same rule applied to the ratio.
    target: str
    op: str
    bound: float
    bench: str
    #: "x": the ratio as 1.19×; "%": as 23.1%.
    unit: str = "x"

    def met(self, ratio: float) -> bool:
        return _OPS[self.op](ratio, self.bound)

    def ratio_text(self, ratio: float) -> str:
        return f"{ratio:.1%}" if self.unit == "%" else f"{ratio:.2f}×"


_T = Target
#: Issue 16's targets first, then the older ones of the summary table, by issue.
TARGETS: tuple[Target, ...] = (
    _T("16.1-node-1", 16, "mllp + parse + ACK vs node `simple-hl7`, 1 connection", "> 1× node", ">", 1, "mllp"),
    _T("16.1-node-8", 16, "mllp + parse + ACK vs node `simple-hl7`, 8 connections", "> 1× node", ">", 1, "mllp"),
    _T("16.1-hl7-1", 16, "mllp + parse + ACK vs python-hl7, 1 connection", "≥ 8× python-hl7", ">=", 8, "mllp"),
    _T("16.1-hl7-8", 16, "mllp + parse + ACK vs python-hl7, 8 connections", "≥ 8× python-hl7", ">=", 8, "mllp"),
    _T("16.1-ack", 16, "`build_ack` vs the parse of the same message (slowest case)", "≤ 1× parse", "<=", 1, "ack"),
    _T("16.2-ceiling", 16, "durable intake at 8 connections vs the one-commit ceiling", "≥ 20% of the ceiling", ">=", 0.2, "intake", "%"),
    _T("16.2-p99", 16, "durable intake p99 at 8 connections", "< 20 ms", "<", 1, "intake"),
    _T("16.3-cpu", 16, "daemon CPU per slot query, 1 client", "≤ 0.4 ms", "<=", 1, "gateway"),
    _T("16.3-p99", 16, "slots p99 at 32 clients, no slot cache", "≤ 20 ms", "<=", 1, "gateway"),
    _T("16.4-orders", 16, "orders/s, two processes (`SO_REUSEPORT`) vs one", "> 1× one process", ">", 1, "twoproc"),
    _T("16.4-slots", 16, "slot queries/s, two processes (`SO_REUSEPORT`) vs one", "> 1× one process", ">", 1, "twoproc"),
    _T("16.5-siu", 16, "SIU outbox claim p99 after the churn (0007 settings)", "≤ 10 ms", "<=", 1, "outbox"),
    _T("16.5-sms", 16, "SMS outbox claim p99 after the churn (0007 settings)", "≤ 10 ms", "<=", 1, "outbox"),
    _T("16.6-p99", 16, "the burst (100 orders/s): ACK p99", "< 1 s", "<", 1, "day"),
    _T("16.6-rss", 16, "the burst: daemon RSS, last 10 s vs first 10 s", "≤ 1.05× (no growth)", "<=", 1.05, "day"),
    _T("16.6-queue", 16, "the burst: queue latency, last 10 s vs first 10 s", "≤ 1× the allowance (no growth)", "<=", 1, "day"),
    _T("3-bare-1", 3, "MLLP server vs a bare `asyncio.Protocol`, 1 connection", "≥ 90% of bare", ">=", 0.9, "mllp", "%"),
    _T("3-bare-8", 3, "MLLP server vs a bare `asyncio.Protocol`, 8 connections", "≥ 90% of bare", ">=", 0.9, "mllp", "%"),
    _T("3-hl7-1", 3, "MLLP server vs python-hl7's `hl7.mllp`, 1 connection", "≥ 25× python-hl7", ">=", 25, "mllp"),
    _T("3-hl7-8", 3, "MLLP server vs python-hl7's `hl7.mllp`, 8 connections", "≥ 25× python-hl7", ">=", 25, "mllp"),
    _T("3-uvloop-1", 3, "MLLP server on uvloop, 1 connection", "≥ 20,000 msgs/s", ">=", 1, "mllp"),
    _T("3-uvloop-8", 3, "MLLP server on uvloop, 8 connections", "≥ 50,000 msgs/s", ">=", 1, "mllp"),
    _T("3-p99", 3, "MLLP server p99, 1 connection", "< 1 ms", "<", 1, "mllp"),
    _T("3-rss", 3, "16 MiB frame: peak RSS growth vs the frame", "< 3×", "<", 3, "mllp"),
    _T("3-linear", 3, "server CPU per MiB, 16 MiB vs 1 MiB frames", "≤ 2× (linear ≈ 1×)", "<=", 2, "mllp"),
    _T("4-slots-p99", 4, "REST slots p99 at 32 clients", "< 5 ms", "<", 1, "gateway"),
    _T("4-own", 4, "REST slots, daemon's share of the median at 1 client", "< 1 ms", "<", 1, "gateway"),
    _T("5-orders", 5, "orders/s over 8 MLLP connections (p99: the durable intake row)", "≥ 1,000 orders/s", ">=", 1, "intake"),
    _T("5-transitions", 5, "conversation transitions (engine, slowest round)", "≥ 500/s", ">=", 1, "intake"),
    _T("5-transitions-p99", 5, "conversation transitions p99 (worst round)", "< 20 ms", "<", 1, "intake"),
    _T("5-webhooks", 5, "signed webhooks, open loop at 500/s", "≥ 98% of 500/s", ">=", 0.98, "webhooks", "%"),
    _T("5-webhooks-p99", 5, "signed webhooks p99", "< 20 ms", "<", 1, "webhooks"),
    _T("6-siu", 6, "SIU to one EMR", "≥ 1,000 SIU/s", ">=", 1, "siu"),
    _T("6-backlog", 6, "10,000 SIU backlog drained after the EMR is back", "< 20 s", "<", 1, "siu"),
    _T("7-idle", 7, "daemon RSS idle", "< 120 MB", "<", 1, "memory"),
    _T("7-growth", 7, "daemon RSS growth over one life under chaos traffic", "≤ 10%", "<=", 0.10, "memory", "%"),
)  # fmt: skip
BY_ID = {t.id: t for t in TARGETS}


def results_dir() -> Path:
    return Path(os.environ.get("RADSCHED_BENCH_RESULTS") or DEFAULT_DIR)


_rows: dict[str, dict[str, Any]] = {}


def record(target_id: str, measured: str, ratio: float) -> None:
    """One target's figure from this run: ``measured`` as a reader says it, ``ratio`` in the
    target's terms (see :data:`TARGETS`); ``met`` follows from the target's bound."""
    t = BY_ID[target_id]
    _rows[target_id] = {
        "target_id": target_id,
        "what": t.what,
        "measured": measured,
        "target": t.target,
        "ratio": ratio,
        "met": t.met(ratio),
        "command": command(),
    }


def command() -> str:
    """How this benchmark was started: ``python -m bench.NAME`` and its options."""
    name = Path(sys.argv[0]).resolve().parent.name if sys.argv and sys.argv[0] else "?"
    return shlex.join(["python", "-m", f"bench.{name}", *sys.argv[1:]])


def save(bench: str, path: Path | None = None) -> Path:
    """Write this process's rows as ``<bench>.json`` (also when there are none: the bench ran)."""
    path = path or results_dir() / f"{bench}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "bench": bench,
        "run": os.environ.get("RADSCHED_BENCH_RUN", ""),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command(),
        "rows": list(_rows.values()),
    }
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"results: {len(_rows)} target rows in {path}", file=sys.stderr)
    return path


def load(
    directory: Path, benches: Iterable[str] | None = None, run: str | None = None
) -> list[dict[str, Any]]:
    """The result files in ``directory`` (those of ``benches`` only, of run ``run`` only)."""
    wanted = set(benches) if benches is not None else None
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "bench" not in data:
            continue
        if wanted is not None and data["bench"] not in wanted:
            continue
        if run is not None and data.get("run") != run:
            continue
        out.append(data)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(files: list[dict[str, Any]]) -> str:
    """The summary: every target in :data:`TARGETS`, from these result files; a target none of
    them measured is "not measured"."""
    rows = {row["target_id"]: row for f in files for row in f.get("rows", [])}
    lines = [
        "| target (issue) | measured | ratio | target | met | by |",
        "|---|---|---|---|---|---|",
    ]
    for t in TARGETS:
        row = rows.get(t.id)
        by = f"`bench.{t.bench}`"
        if row is None:
            lines.append(
                f"| {_cell(t.what)} ({t.issue}) | not measured | — | {t.target} | — | {by} |"
            )
            continue
        met = "yes" if t.met(float(row["ratio"])) else "no"
        lines.append(
            f"| {_cell(t.what)} ({t.issue}) | {_cell(row['measured'])} | "
            f"{t.ratio_text(float(row['ratio']))} | {t.target} | {met} | {by} |"
        )
    return "\n".join(lines)


def commands(files: list[dict[str, Any]]) -> str:
    """One line per result file: when it finished and the command that measured it."""
    return "\n".join(
        f"- `bench.{f['bench']}`, {f.get('finished', '?')}: `{f.get('command', '?')}`"
        for f in sorted(files, key=lambda f: str(f["bench"]))
    )


def summary(files: list[dict[str, Any]], heading: str) -> str:
    """The summary block: a line saying where it comes from, the table, the commands."""
    met = sum(
        1
        for f in files
        for row in f.get("rows", [])
        if row["target_id"] in BY_ID and BY_ID[row["target_id"]].met(float(row["ratio"]))
    )
    measured = {row["target_id"] for f in files for row in f.get("rows", [])} & set(BY_ID)
    parts = [
        heading,
        "",
        table(files),
        "",
        f"{len(measured)} of {len(TARGETS)} targets measured, {met} met. Measured by:",
        "",
        commands(files) if files else "- nothing: no result files",
    ]
    return "\n".join(parts)


def rewrite_doc(doc: Path, text: str) -> None:
    """Replace what lies between the summary markers of ``doc`` with ``text``."""
    content = doc.read_text()
    start, end = content.find(SUMMARY_START), content.find(SUMMARY_END)
    if start < 0 or end < start:
        raise SystemExit(f"{doc}: markers {SUMMARY_START} … {SUMMARY_END} not found")
    doc.write_text(content[: start + len(SUMMARY_START)] + "\n" + text + "\n" + content[end:])
