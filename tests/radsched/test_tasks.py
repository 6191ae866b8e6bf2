"""spawn(): the one way radsched starts background work, named, held and logged when it fails."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from radsched import tasks
from radsched.tasks import spawn


async def test_a_failing_background_task_is_logged_at_once_with_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("the EMR went away")

    with caplog.at_level(logging.ERROR, logger="radsched.tasks"):
        task = spawn(broken(), name="emr:lab")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert task.get_name() == "emr:lab"
    [record] = [r for r in caplog.records if r.name == "radsched.tasks"]
    assert "emr:lab" in record.getMessage()
    assert record.exc_info is not None and "the EMR went away" in str(record.exc_info[1])


async def test_an_awaited_task_leaves_its_error_to_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise ValueError("bad slot")

    with caplog.at_level(logging.ERROR, logger="radsched.tasks"):
        task = spawn(broken(), name="ris-booking", awaited=True)
        with pytest.raises(ValueError, match="bad slot"):
            await task
        await asyncio.sleep(0)
    assert not [r for r in caplog.records if r.name == "radsched.tasks"]


async def test_a_cancelled_task_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR, logger="radsched.tasks"):
        task = spawn(forever(), name="sms-timer")
        await started.wait()
        task.cancel()
        await asyncio.wait([task])
        await asyncio.sleep(0)
    assert task.cancelled()
    assert not [r for r in caplog.records if r.name == "radsched.tasks"]


async def test_an_unheld_task_survives_garbage_collection() -> None:
    """The loop keeps only weak references; spawn holds each task until it ends."""
    release = asyncio.Event()
    finished = asyncio.Event()

    async def work() -> None:
        await release.wait()
        finished.set()

    before = tasks.running()
    spawn(work(), name="fire-and-forget")  # the result is dropped on purpose
    gc.collect()
    assert tasks.running() == before + 1
    release.set()
    await finished.wait()
    await asyncio.sleep(0)
    assert tasks.running() == before


def test_ruff_bans_raw_create_task_inside_radsched() -> None:
    root = Path(__file__).resolve().parents[2]
    ruff = Path(sys.executable).with_name("ruff")
    source = "import asyncio\n\n\nasync def f() -> None:\n    asyncio.create_task(f())\n"
    run = subprocess.run(
        [str(ruff), "check", "--select", "TID251", "--stdin-filename", "radsched/probe.py", "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    assert run.returncode == 1 and "use radsched.tasks.spawn" in run.stdout
