"""Operator commands run where no daemon has run (issue 11 item 6): they used to create ``./var``
with new secrets (``text`` signed with a token the daemon never had) or a whole new embedded
cluster, and then fail obscurely. Now they create nothing and say why in one line, exit 2.

Real ``python -m radsched`` processes in an empty directory, without any RADSCHED_ setting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import private_tmp

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = [
    ["text", "+12125550123", "YES"],
    ["hash-phone", "+12125550123"],
    ["report"],
    ["outbox", "list"],
    ["appointment", "show", "A1"],
    ["appointment", "cancel", "A1", "--by", "ops"],
    ["shadow", "report"],
    ["modality", "list"],
    ["purge"],
    ["admin-user", "list"],
]


@pytest.fixture
def elsewhere() -> Iterator[Path]:
    path = private_tmp("radsched-elsewhere-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def radsched(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSCHED_")}
    env |= {"PYTHONPATH": str(ROOT), **{f"RADSCHED_{k.upper()}": v for k, v in settings.items()}}
    env.pop("STATE_DIRECTORY", None)
    return subprocess.run(
        [sys.executable, "-m", "radsched", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_command_without_daemon_data_creates_nothing_and_says_so(
    elsewhere: Path, args: list[str]
) -> None:
    run = radsched(elsewhere, *args)
    expected = (
        f"radsched: no daemon data in {elsewhere / 'var'} "
        "(set RADSCHED_DATA_DIR or run from the daemon's directory)\n"
    )
    assert (run.returncode, run.stderr) == (2, expected), run.stdout
    assert list(elsewhere.iterdir()) == []


def test_a_data_dir_named_but_empty_is_refused_the_same_way(elsewhere: Path) -> None:
    empty = elsewhere / "data"
    run = radsched(elsewhere, "text", "+12125550123", "YES", data_dir=str(empty))
    assert run.returncode == 2 and f"no daemon data in {empty} " in run.stderr
    assert not empty.exists()


def test_with_database_url_a_command_leaves_data_dir_alone(
    elsewhere: Path, database_url: str
) -> None:
    run = radsched(elsewhere, "outbox", "list", database_url=database_url)
    assert run.returncode == 0, run.stderr
    assert list(elsewhere.iterdir()) == []
    # The auth token the daemon would have generated into DATA_DIR is not there: say so.
    run = radsched(elsewhere, "text", "+12125550123", "YES", database_url=database_url)
    assert run.returncode == 2 and "no daemon data in" in run.stderr
    assert list(elsewhere.iterdir()) == []


def test_migrate_still_makes_data_dir_on_first_start(elsewhere: Path, database_url: str) -> None:
    run = radsched(elsewhere, "migrate", database_url=database_url)
    assert run.returncode == 0 and "schema up to date" in run.stdout, run.stderr
    assert (elsewhere / "var").is_dir()
