"""Run every benchmark, then the summary against the targets.

``python -m bench [--only NAME,NAME] [--no-docs] [--summary] [-- OPTION ...]`` (``make bench``)

Runs ``python -m bench.<name>`` for each subpackage that has a ``__main__.py``, one after another,
each with its default settings (``--only``: those named; options after ``--`` go to each of them).
Each benchmark writes its targets' figures into ``bench/.results/<name>.json`` (bench/_results.py);
afterwards one table of every target is printed from this run's files, a target whose benchmark
did not run or failed as "not measured", and, after a full run without ``--no-docs``, written over
the "Summary against the targets" table of docs/performance.md. ``--summary`` prints the table from
the last result files without running anything.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench import _results

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "performance.md"
#: These write nothing into docs/performance.md and take no ``--no-docs``.
NO_DOCS_FLAG = {"interop", "security", "siu"}


def benchmarks() -> list[str]:
    return sorted(e.name for e in HERE.iterdir() if (e / "__main__.py").is_file())


def run(names: list[str], extra: list[str], no_docs: bool, run_id: str) -> dict[str, int]:
    """Each benchmark in turn, its old result file removed first; exit status by name."""
    directory = _results.results_dir()
    status = {}
    for name in names:
        (directory / f"{name}.json").unlink(missing_ok=True)
        cmd = [sys.executable, "-m", f"bench.{name}", *extra]
        if no_docs and name not in NO_DOCS_FLAG:
            cmd.append("--no-docs")
        print(f"== {shlex.join(['python', *cmd[1:]])}", file=sys.stderr)
        env = {**os.environ, "RADSCHED_BENCH_RUN": run_id}
        status[name] = subprocess.run(cmd, cwd=HERE.parent, env=env, check=False).returncode
        if status[name] != 0:
            # A benchmark that failed measured nothing we can stand behind.
            (directory / f"{name}.json").unlink(missing_ok=True)
            print(f"== bench.{name} failed (exit {status[name]})", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    invocation = f"`{shlex.join(['python', '-m', 'bench', *argv])}`" + (
        "" if argv else " (`make bench`)"
    )
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated benchmarks (e.g. mllp,ack)")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    parser.add_argument(
        "--summary", action="store_true", help="print the table from the last results; run nothing"
    )
    args = parser.parse_args(argv)
    directory = _results.results_dir()
    if args.summary:
        files = _results.load(directory)
        print(_results.summary(files, f"Summary from the last results in {directory}:"))
        return 0
    names = benchmarks()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"no such benchmark: {', '.join(unknown)} (there are {', '.join(names)})")
        names = [n for n in names if n in wanted]
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"
    began = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    status = run(names, extra, args.no_docs, run_id)
    ended = time.strftime("%H:%M UTC", time.gmtime())
    files = _results.load(directory, names, run=run_id)
    failed = [n for n, rc in status.items() if rc]
    heading = (
        f"From one run, {began}–{ended}: {invocation}"
        + (f" (failed: {', '.join(f'bench.{n}' for n in failed)})" if failed else "")
        + f"; load average after {os.getloadavg()[0]:.2f}."
    )
    text = _results.summary(files, heading)
    print(text)
    if args.only or args.no_docs:
        print("docs/performance.md's summary left alone (--only or --no-docs)", file=sys.stderr)
    else:
        _results.rewrite_doc(DOC, text)
        print(f"summary written to {DOC}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
