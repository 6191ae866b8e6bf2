"""The SMS transport in a real ``radsched run`` subprocess: crash mid-send, ``radsched text``.

The daemon is killed with SIGKILL while the Twilio double holds its send request open, which is
the worst moment: the request has left, no answer came back, and nothing was recorded after the
claim. The rule under test: the text is never sent a second time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from radsched.privacy import PhiBox, phone_hash
from radsched.storage.sms_outbox import enqueue_text
from tests.daemonproc import DaemonProcess
from tests.smstwilio.conftest import PATIENT
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def keys() -> dict[str, str]:
    return {
        "RADSCHED_PHONE_HASH_KEY": secrets.token_hex(32),
        "RADSCHED_PHI_KEY": secrets.token_hex(32),
    }


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for proc in started:
        proc.kill()


async def _enqueue(dsn: str, keys: dict[str, str]) -> int:
    phi = PhiBox.from_secret(keys["RADSCHED_PHI_KEY"])
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            return await enqueue_text(
                conn,
                phi=phi,
                to_e164=PATIENT,
                body="Lakeside Imaging: reply YES to schedule.",
                template_id="consent_request",
                phone_hash=phone_hash(bytes.fromhex(keys["RADSCHED_PHONE_HASH_KEY"]), PATIENT),
                conversation_id=uuid.uuid4(),
                correlation_id="cid-crash",
                now=datetime.now(UTC),
            )
    finally:
        await conn.close()


async def _row(dsn: str, outbox_id: int) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM sms_outbox WHERE id = $1", outbox_id)
    finally:
        await conn.close()
    assert row is not None
    return row


async def _start(proc: DaemonProcess) -> DaemonProcess:
    # DaemonProcess blocks on the notify socket; keep the loop (and the double) serving meanwhile.
    return await asyncio.to_thread(proc.start)


async def test_daemon_killed_mid_send_never_sends_twice(
    data_dir: Path,
    database_url: str,
    double: TwilioDouble,
    keys: dict[str, str],
    daemons: list[DaemonProcess],
) -> None:
    public = "https://sched.example.org"
    env = {
        **keys,
        "RADSCHED_DATABASE_URL": database_url,
        "RADSCHED_PUBLIC_URL": public,
        "RADSCHED_TWILIO_ACCOUNT_SID": double.account_sid,
        "RADSCHED_TWILIO_AUTH_TOKEN": double.auth_token,
        "RADSCHED_TWILIO_FROM": "+15005550006",
        "RADSCHED_TWILIO_API_URL": double.url,
    }
    first = DaemonProcess(data_dir, env=env)
    daemons.append(first)
    await _start(first)
    double.stall()
    outbox_id = await _enqueue(database_url, keys)
    await double.wait_requests(1, timeout=30)
    assert (await _row(database_url, outbox_id))["state"] == "sending"
    first.kill()  # SIGKILL: no shutdown code runs
    double.release()  # Twilio accepts the request that had already arrived
    [message] = await double.wait_accepted(1)

    second = DaemonProcess(data_dir, env=env)
    daemons.append(second)
    await _start(second)

    async def resolved() -> bool:
        # PostgreSQL notices the killed client's session on its own schedule: poll, bounded.
        return bool((await _row(database_url, outbox_id))["state"] != "sending")

    await eventually(resolved, timeout=20, what="the interrupted send resolved", every=0.1)
    row = await _row(database_url, outbox_id)
    assert row["state"] == "failed" and row["error_class"] == "ambiguous"
    assert len(double.requests) == 1 and len(double.accepted) == 1

    # Twilio's status callback (signed for PUBLIC_URL, carrying ?outbox=<id>) settles it.
    status, _ = await double.post_status(message.sid, "delivered", deliver_to=second.url())
    assert status == 200
    row = await _row(database_url, outbox_id)
    assert row["state"] == "delivered" and row["provider_sid"] == message.sid
    assert row["payload"] is None
    assert second.stop() == 0
    assert len(double.requests) == 1, "never two texts"
    assert PATIENT not in first.log() + second.log()


async def test_radsched_text_posts_a_signed_inbound_sms(
    data_dir: Path, database_url: str, keys: dict[str, str], daemons: list[DaemonProcess]
) -> None:
    env = {**keys, "RADSCHED_DATABASE_URL": database_url}
    daemon = DaemonProcess(data_dir, env=env)
    daemons.append(daemon)
    await _start(daemon)
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("RADSCHED_")}
    cli_env.update(env, RADSCHED_DATA_DIR=str(data_dir))
    sid = "SM" + secrets.token_hex(16)
    command = [sys.executable, "-m", "radsched", "text", "+12125550123", "HELP"]
    command += ["--url", daemon.url(), "--sid", sid]
    done = await asyncio.to_thread(
        subprocess.run, command, env=cli_env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"200 {sid}")
    assert "<Response/>" in done.stdout
    again = await asyncio.to_thread(
        subprocess.run, command, env=cli_env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and again.stdout.startswith("200")
    assert daemon.stop() == 0
    # The HELP answer went through the outbox to the console provider, once, with a masked number.
    log = daemon.log()
    assert log.count("[SMS to +1******0123 | help]") == 1, log
    assert "+12125550123" not in log
