"""Everything around one real ``radsched run`` subprocess for a chaos run, and the switches to hurt it.

Outside the daemon, all real sockets and real processes:

* PostgreSQL: an embedded cluster in a temp dir (``radsched.storage.embedded``), restartable;
* the RIS: an in-process :class:`radsched.simris.SimRis` behind a :class:`mllp.testing.FaultProxy`;
* two EMRs: :class:`mllp.testing.LoopbackPeer`\\ s answering like EMRs (:class:`EmrPeer`), each behind a
  FaultProxy, both routed for every facility (``EMR_ROUTES`` with two destinations);
* Twilio: the double of ``tests/twilio_double.py``; patients reply through it (signed webhooks).

The daemon's listeners bind port 0 on every start, so the order feed and the patients ask the world
for the current address (``mllp_address`` / ``http_base``) on every attempt, like clients behind a
virtual IP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from mllp.testing import FaultProxy, LoopbackPeer
from radsched.simris import SimRis, default_calendar
from radsched.storage import embedded
from tests.chaos.peers import EmrPeer
from tests.conftest import private_tmp
from tests.daemonproc import DaemonProcess
from tests.twilio_double import TwilioDouble

PUBLIC_URL = "https://radsched.example.org"
RIS_TIMEOUT_S = 2.0
EMR_ACK_TIMEOUT_S = 2.0


@dataclass
class Emr:
    peer: EmrPeer
    server: LoopbackPeer
    proxy: FaultProxy


@dataclass
class World:
    root: Path
    pg: embedded.EmbeddedPostgres
    sim: SimRis
    ris_proxy: FaultProxy
    emrs: list[Emr]
    twilio: TwilioDouble
    data_dir: Path
    daemon: DaemonProcess | None = None
    kills: int = 0
    pg_restarts: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    failed_starts: int = 0
    rss_at_kill_kb: list[int] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pg_up: asyncio.Event = field(default_factory=asyncio.Event)

    # --- addresses for the clients -------------------------------------------------------------

    def mllp_address(self) -> tuple[str, int] | None:
        d = self.daemon
        return d.addresses.get("mllp") if d is not None and self._lock.locked() is False else None

    def http_base(self) -> str | None:
        d = self.daemon
        if d is None or self._lock.locked() or "http" not in d.addresses:
            return None
        return d.url()

    @property
    def dsn(self) -> str:
        return self.pg.dsn()

    def env(self) -> dict[str, str]:
        routes = ",".join(f"*=127.0.0.1:{emr.proxy.port};name={emr.peer.name}" for emr in self.emrs)
        return {
            "RADSCHED_DATABASE_URL": self.dsn,
            "RADSCHED_PHONE_HASH_KEY": "c" * 64,
            "RADSCHED_PHI_KEY": "d" * 64,
            "RADSCHED_RIS_ADDR": f"127.0.0.1:{self.ris_proxy.port}",
            "RADSCHED_RIS_TIMEOUT_S": str(RIS_TIMEOUT_S),
            "RADSCHED_EMR_ROUTES": routes,
            "RADSCHED_EMR_ACK_TIMEOUT_S": str(EMR_ACK_TIMEOUT_S),
            "RADSCHED_EMR_RETRY_INITIAL_S": "0.1",
            "RADSCHED_EMR_RETRY_MAX_S": "1",
            # A NAK window of the chaos schedule must not dead-letter a message; dead letters
            # are a separate test (tests/emr). The invariant here is exactly-once delivery.
            "RADSCHED_EMR_MAX_REJECTIONS": "100",
            "RADSCHED_TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "RADSCHED_TWILIO_AUTH_TOKEN": self.twilio.auth_token,
            "RADSCHED_TWILIO_FROM": "+12175550100",
            "RADSCHED_TWILIO_API_URL": self.twilio.url,
            "RADSCHED_PUBLIC_URL": PUBLIC_URL,
            "RADSCHED_QUIET_HOURS": "off",
            "RADSCHED_PRACTICE_NAME": "Chaos Imaging",
            "RADSCHED_SCHEDULING_PHONE": "217-555-0100",
            "RADSCHED_ENABLED_MODALITIES": "CR,DX",
        }

    # --- the daemon ----------------------------------------------------------------------------

    async def start_daemon(self) -> None:
        async with self._lock:
            await self._start_locked()

    async def _start_locked(self) -> None:
        while True:
            await self._pg_up.wait()
            proc = DaemonProcess(self.data_dir, env=self.env())
            try:
                # DaemonProcess blocks on its notify socket: keep our peers serving meanwhile.
                self.daemon = await asyncio.to_thread(proc.start)
                return
            except AssertionError:
                # Start-up failed (the database went down under it): like systemd, start again.
                self.failed_starts += 1
                await asyncio.to_thread(proc.kill)

    async def kill_daemon(self, *, downtime: float = 0.0) -> None:
        """SIGKILL (no shutdown code runs), then start a new daemon on the same state."""
        async with self._lock:
            if self.daemon is not None and self.daemon.proc is not None:
                rss = rss_kb(self.daemon.proc.pid)
                if rss:
                    self.rss_at_kill_kb.append(rss)
                self.daemon.signal(signal.SIGKILL)
                await asyncio.to_thread(self.daemon.kill)
            self.kills += 1
            if downtime:
                await asyncio.sleep(downtime)
            await self._start_locked()

    async def watch_daemon(self) -> None:
        """Restart a daemon that exited on its own (and remember it: that is a finding)."""
        while True:
            await asyncio.sleep(0.25)
            d = self.daemon
            if self._lock.locked() or d is None or d.proc is None or d.proc.poll() is None:
                continue
            async with self._lock:
                if d is not self.daemon or d.proc is None:
                    continue
                tail = "\n".join(d.log().splitlines()[-5:])
                self.unexpected_exits.append(f"exit {d.proc.returncode}: {tail}")
                d.close()
                await self._start_locked()

    async def stop_daemon(self) -> None:
        async with self._lock:
            if self.daemon is not None:
                await asyncio.to_thread(self.daemon.stop)

    def daemon_rss_kb(self) -> int:
        d = self.daemon
        return rss_kb(d.proc.pid) if d is not None and d.proc is not None else 0

    # --- PostgreSQL ----------------------------------------------------------------------------

    async def restart_postgres(self, downtime: float) -> None:
        """Fast shutdown (every session cut), ``downtime`` seconds down, start again."""
        self._pg_up.clear()
        try:
            await embedded.stop(self.pg)
            self.pg_restarts += 1
            await asyncio.sleep(downtime)
        finally:
            self.pg = await embedded.start(self.root / "pg")
            self._pg_up.set()

    async def query(self, sql: str, *args: object) -> list[asyncpg.Record]:
        await self._pg_up.wait()
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    # --- faults off ----------------------------------------------------------------------------

    def clear_faults(self) -> None:
        self.sim.clear_faults()
        self.ris_proxy.clear()
        for emr in self.emrs:
            emr.peer.nak = ""
            emr.proxy.clear()


def rss_kb(pid: int) -> int:
    """Resident set size of one process (not its children), from /proc."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextlib.asynccontextmanager
async def world() -> AsyncIterator[World]:
    root = private_tmp("radsched-chaos-")
    stack = contextlib.AsyncExitStack()
    try:
        pg = await embedded.start(root / "pg")
        stack.push_async_callback(_stop_pg, root)
        sim = await stack.enter_async_context(SimRis(default_calendar()))
        ris_proxy = await stack.enter_async_context(FaultProxy(sim.host, sim.port))
        emrs = []
        for name in ("emr-a", "emr-b"):
            peer = EmrPeer(name)
            server = await stack.enter_async_context(LoopbackPeer(peer.reply))
            proxy = await stack.enter_async_context(FaultProxy(server.host, server.port))
            emrs.append(Emr(peer, server, proxy))
        twilio = await stack.enter_async_context(TwilioDouble())
        data_dir = root / "data"
        data_dir.mkdir(mode=0o700)
        w = World(root, pg, sim, ris_proxy, emrs, twilio, data_dir)
        w._pg_up.set()
        stack.push_async_callback(_kill_daemon, w)
        yield w
    finally:
        await stack.aclose()
        if os.environ.get("CHAOS_KEEP"):
            print(f"chaos: kept {root} (daemon logs, database cluster)")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def _kill_daemon(w: World) -> None:
    if w.daemon is not None:
        await asyncio.to_thread(w.daemon.kill)


async def _stop_pg(root: Path) -> None:
    with contextlib.suppress(Exception):
        await embedded.stop(await embedded.start(root / "pg"))


def new_seed() -> int:
    return int(os.environ.get("CHAOS_SEED", "0")) or secrets.randbelow(2**31)


def monotonic() -> float:
    return time.monotonic()
