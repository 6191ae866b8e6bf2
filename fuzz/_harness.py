"""What every harness shares: libFuzzer flags that bound a run, and the fixture corpus as seeds."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def seed_corpus() -> Path:
    """A fresh directory holding every fixture message, so libFuzzer starts from real HL7."""
    corpus = Path(tempfile.mkdtemp(prefix="radsched-fuzz-corpus-"))
    for n, path in enumerate(sorted(FIXTURES.rglob("*.hl7"))):
        (corpus / f"{n:03d}-{path.name}").write_bytes(path.read_bytes())
    return corpus


def run(test_one_input: Callable[[bytes], None], argv: list[str]) -> None:
    """Start libFuzzer on ``test_one_input``; ``argv`` are libFuzzer flags (e.g. -max_total_time=60)."""
    import atheris  # type: ignore[import-untyped]

    args = [sys.argv[0], *argv]
    if not any(a.startswith("-artifact_prefix=") for a in argv):
        # Crashing inputs go to a temporary directory (printed by libFuzzer), not the checkout.
        args.append(f"-artifact_prefix={tempfile.mkdtemp(prefix='radsched-fuzz-crash-')}/")
    if not any(not a.startswith("-") for a in argv):
        args.append(str(seed_corpus()))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
