"""``python -m fuzz [--seconds S] [--examples N] [--only NAME ...]``: the long fuzzing run.

1. Each atheris harness (framer, hl7_parse, inbound) runs in its own process for ``--seconds``,
   with libFuzzer's own bounds: ``-rss_limit_mb`` (memory), ``-timeout`` (seconds per input, so a
   hang is a failure) and ``-max_total_time``. A crash, hang or leak writes the input to a
   temporary directory and fails the run.
2. The hypothesis end-to-end fuzz of a daemon's MLLP listener, the schemathesis run against
   its OpenAPI document and the Unicode delimiter-injection property (any value on any link reads
   back as meant), with ``--examples`` examples instead of the bounded ``make test`` slice,
   and fresh random inputs each time.

Without atheris installed (it builds only where libFuzzer is available), step 1 is skipped with a
notice and step 2 still runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time

HARNESSES = ("framer", "hl7_parse", "inbound")
PYTEST_TARGETS = (
    "tests/security/test_inbound_fuzz.py::test_arbitrary_bytes_always_get_an_ack_or_a_nak",
    "tests/security/test_openapi_fuzz.py",
    "tests/security/test_unicode_fields.py::test_any_unicode_value_reads_back_as_meant",
)


def run_harness(name: str, seconds: int, rss_mb: int) -> bool:
    flags = [f"-max_total_time={seconds}", f"-rss_limit_mb={rss_mb}", "-timeout=10"]
    started = time.monotonic()
    # Our own interpreter and module names only; nothing from outside reaches the command line.
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", f"fuzz.{name}", *flags], capture_output=True, text=True, check=False
    )
    tail = [line for line in proc.stderr.splitlines() if line.startswith(("Done", "artifact"))]
    ok = proc.returncode == 0
    print(
        f"{name:10} {'ok' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s: {' '.join(tail)}"
    )
    if not ok:
        print(proc.stderr[-4000:])
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="per atheris harness (default 60)")
    parser.add_argument(
        "--examples", type=int, default=1000, help="hypothesis examples (default 1000)"
    )
    parser.add_argument("--rss-mb", type=int, default=1024, help="memory limit per harness in MiB")
    parser.add_argument("--only", nargs="*", choices=(*HARNESSES, "pytest"), help="run only these")
    args = parser.parse_args()
    wanted = set(args.only or (*HARNESSES, "pytest"))
    ok = True
    if importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: coverage-guided harnesses skipped (pip install atheris)")
    else:
        for name in HARNESSES:
            if name in wanted:
                ok &= run_harness(name, args.seconds, args.rss_mb)
    if "pytest" in wanted:
        env = {**os.environ, "SECURITY_FUZZ_EXAMPLES": str(args.examples)}
        proc = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PYTEST_TARGETS],
            env=env,
            check=False,
        )
        ok &= proc.returncode == 0
    print("fuzz: all passed" if ok else "fuzz: FAILURES (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
