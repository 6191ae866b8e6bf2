"""``radsched outbox`` beside a running daemon: list, retry a dead letter (same MSH-10), drop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from channels import parse as parse_hl7
from mllp.testing import LoopbackPeer
from radsched.commands.outbox import OutboxActionError, drop_row, list_outbox, retry_row
from radsched.daemon import running
from tests.channels.hl7check import assert_valid_hl7
from tests.emr.helpers import book, booked, env, eventually, reply_with, settings


async def test_list_retry_and_drop_beside_a_running_daemon(
    data_dir: Path, database_url: str, tmp_path: Path
) -> None:
    verdict = {"code": "AE"}

    def reply(payload: bytes) -> bytes:
        return reply_with(verdict["code"])(payload)

    async with LoopbackPeer(reply) as emr:
        dest = f"127.0.0.1:{emr.port}"
        cfg = settings(
            data_dir, database_url, emr_routes=f"*=127.0.0.1:{emr.port}", emr_max_rejections=1
        )
        # The CLI's own settings: same database, its own DATA_DIR (as on an operator's shell).
        cli = settings(tmp_path, database_url, emr_routes=cfg.emr_routes)
        async with running(cfg) as daemon:
            await book(daemon, booked(1), booked(2))
            await emr.wait_for_frames(2)

            async def both_dead() -> bool:
                rows = await list_outbox(cli, state="dead")
                return len(rows) == 2

            await eventually(both_dead, what="two dead letters")
            rows = await list_outbox(cli, destination=dest)
            assert [r["appointment_id"] for r in rows] == ["APT000002", "APT000001"]  # newest first
            assert all("AE" in r["last_error"] and r["has_body"] for r in rows)
            first, second = rows[1]["id"], rows[0]["id"]

            verdict["code"] = "AA"
            message = await retry_row(cli, first)
            assert "queued again" in message
            frames = await emr.wait_for_frames(3)
            assert parse_hl7(frames[2]).control_id == parse_hl7(frames[0]).control_id

            async def redelivered() -> bool:
                rows = await list_outbox(cli, state="delivered")
                return [r["id"] for r in rows] == [first]

            await eventually(redelivered, what="retried row delivered")
            with pytest.raises(OutboxActionError, match="already delivered"):
                await retry_row(cli, first)

            assert "dropped" in await drop_row(cli, second)
            dropped = (await list_outbox(cli, state="dead"))[0]
            assert dropped["id"] == second and not dropped["has_body"]
            with pytest.raises(OutboxActionError, match="no body"):
                await retry_row(cli, second)
            with pytest.raises(OutboxActionError, match="no hl7_outbox row"):
                await drop_row(cli, 999_999)
            with pytest.raises(OutboxActionError, match="never re-sent"):
                await retry_row(cli, 1, kind="sms")
            assert await list_outbox(cli, kind="sms") == []


async def test_unrouted_dead_letter_is_sent_on_once_the_operator_names_a_destination(
    data_dir: Path, database_url: str
) -> None:
    async with LoopbackPeer() as emr:
        routes = f"HOSP=127.0.0.1:{emr.port};receiver=EPIC^HOSP;name=epic"
        cfg = settings(data_dir, database_url, emr_routes=routes)
        async with running(cfg) as daemon:
            await book(daemon, booked(1, facility="OTHER"))
            row = (await list_outbox(cfg, destination="unrouted"))[0]
            with pytest.raises(OutboxActionError, match="RADSCHED_EMR_ROUTES"):
                await retry_row(cfg, row["id"])
            with pytest.raises(OutboxActionError, match="not a destination"):
                await retry_row(cfg, row["id"], to="nowhere")
            assert "queued for epic" in await retry_row(cfg, row["id"], to="epic")
            (frame,) = await emr.wait_for_frames(1)
            assert_valid_hl7(frame)
            msg = parse_hl7(frame)
            assert msg.control_id == row["control_id"]
            assert (msg.receiving_application, msg.receiving_facility) == ("EPIC", "HOSP")

            async def delivered() -> bool:
                return [r["state"] for r in await list_outbox(cfg, destination="epic")] == [
                    "delivered"
                ]

            await eventually(delivered, what="re-routed row delivered")


async def test_outbox_command_line(data_dir: Path, database_url: str) -> None:
    cfg = settings(data_dir, database_url, emr_routes="HOSP=127.0.0.1:1")
    async with running(cfg) as daemon:
        await book(daemon, booked(1, facility="OTHER"))
    environment = {**env(database_url), "RADSCHED_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}

    def radsched(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "radsched", "outbox", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed, table, wrong = await asyncio.gather(
        asyncio.to_thread(radsched, "list", "--json", "--state", "dead"),
        asyncio.to_thread(radsched, "list"),
        asyncio.to_thread(radsched, "list", "--state", "lost"),
    )
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["destination"] == "unrouted" and row["appointment_id"] == "APT000001"
    assert "unrouted" in table.stdout and "no EMR route for facility 'OTHER'" in table.stdout
    assert wrong.returncode == 2
    dropped = await asyncio.to_thread(radsched, "drop", str(row["id"]))
    assert dropped.returncode == 0 and "dropped" in dropped.stdout
    refused = await asyncio.to_thread(radsched, "retry", str(row["id"]))
    assert refused.returncode == 1 and "no body" in refused.stderr
