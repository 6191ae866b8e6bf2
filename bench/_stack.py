"""Shared by the daemon benchmarks: an embedded PostgreSQL, the Twilio double and ``radsched run``.

The daemon is pinned to core DAEMON_CPU; the double, and this process afterwards, to LOAD_CPU
(PostgreSQL is not pinned). :func:`start` brings the three up; :func:`stop` takes down whatever is
still running, newest first.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.webhooks.__main__ import PUBLIC_URL, TWILIO_FROM, pin, start_double

DAEMON_CPU, LOAD_CPU = 0, 1


def daemon_env(
    dsn: str, account_sid: str, token: str, double_url: str, hash_key: str
) -> dict[str, str]:
    """``radsched run``'s settings for the benchmarks: texts to the Twilio double, no quiet hours."""
    return {
        "RADSCHED_DATABASE_URL": dsn,
        "RADSCHED_PHI_KEY": secrets.token_hex(32),
        "RADSCHED_PHONE_HASH_KEY": hash_key,
        "RADSCHED_PUBLIC_URL": PUBLIC_URL,
        "RADSCHED_TWILIO_ACCOUNT_SID": account_sid,
        "RADSCHED_TWILIO_AUTH_TOKEN": token,
        "RADSCHED_TWILIO_FROM": TWILIO_FROM,
        "RADSCHED_TWILIO_API_URL": double_url,
        "RADSCHED_QUIET_HOURS": "",
        "RADSCHED_ENABLED_MODALITIES": "CR",
        "RADSCHED_PRACTICE_NAME": "Lakeside Imaging",
        "RADSCHED_SCHEDULING_PHONE": "(555) 010-0200",
    }


@dataclass
class Stack:
    pg: Any  # radsched.storage.embedded.EmbeddedPostgres
    dsn: str
    account_sid: str
    token: str
    hash_key: str
    env: dict[str, str]
    double: subprocess.Popen[str] | None = None
    daemon: Any = None  # tests.daemonproc.DaemonProcess while running

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None


async def start(work: Path, database: str) -> Stack:
    """PostgreSQL with a fresh ``database``, the Twilio double, then the daemon (ready)."""
    from radsched.storage import embedded
    from tests.daemonproc import DaemonProcess

    pg = await embedded.start(work / "pg")
    stack = Stack(pg, pg.dsn(database), "AC" + secrets.token_hex(16), secrets.token_hex(16),
                  secrets.token_hex(32), {})  # fmt: skip
    try:
        admin = await asyncpg.connect(pg.dsn("postgres"))
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        pin(LOAD_CPU)
        stack.double, double_url = start_double(stack.account_sid, stack.token)
        stack.env = daemon_env(
            stack.dsn, stack.account_sid, stack.token, double_url, stack.hash_key
        )
        pin(DAEMON_CPU)
        data_dir = work / "data"
        data_dir.mkdir(mode=0o711)
        stack.daemon = DaemonProcess(data_dir, env=stack.env).start()
        pin(LOAD_CPU)
    except BaseException:
        await stop(stack)
        raise
    return stack


async def stop(stack: Stack) -> None:
    from radsched.storage import embedded

    stack.stop_daemon()
    if stack.double is not None:
        stack.double.terminate()
        stack.double.wait(10)
        stack.double = None
    await embedded.stop(stack.pg)
