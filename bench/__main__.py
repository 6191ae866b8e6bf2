"""Run every benchmark: ``python -m bench`` (``make bench``) runs ``python -m bench.<name>`` for each
subpackage that has a ``__main__.py``, one after another, each with its default settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    status = 0
    for entry in sorted(here.iterdir()):
        if (entry / "__main__.py").is_file():
            print(f"== python -m bench.{entry.name}", file=sys.stderr)
            cmd = [sys.executable, "-m", f"bench.{entry.name}"]
            status |= subprocess.run(cmd, cwd=here.parent, check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
