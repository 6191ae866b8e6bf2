"""Real ``radsched run`` processes on the test database: SIGKILL between commit and delivery, and two
daemons sharing one database and one EMR (one drains, the other takes over when it dies).

SIUs enter through relay mode (the RIS sends them to a daemon's MLLP listener), which commits and
ACKs before anything is sent to the EMR — the same outbox path a booking takes.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

import mllp
from channels import AckCode, read_ack
from channels import parse as parse_hl7
from mllp.testing import LoopbackPeer, ack_for
from tests.conftest import private_tmp
from tests.daemonproc import DaemonProcess
from tests.emr.helpers import env

RIS_SIU = (
    "MSH|^~\\&|SYNAPSERIS|RADCO|RADSCHED|RADSCHED|20250114103000||SIU^S12|{cid}|P|2.3\r"
    "SCH|{apt}^SYNAPSERIS|F{apt}^SYNAPSERIS||||NEW^New appointment^L|ROUTINE^Routine^HL70276|"
    "XR30^X-ray 30 minute^L|30|min|^^M30^20250115090000^20250115093000|||||^SCHEDULER^RIS||||"
    "^SCHEDULER^RIS|||||Booked\r"
    "PID|1||MRN00001^^^RADCO^MR||TESTPATIENT^ALPHA||19800101|F\r"
    "RGS|1\rAIS|1||71046^XR CHEST 2 VIEWS^C4|20250115090000|||30|min\r"
)


def siu(n: int) -> bytes:
    return RIS_SIU.format(cid=f"RIS{n:06d}", apt=f"APT{n:05d}").encode()


def appointment(frame: bytes) -> str:
    sch = parse_hl7(frame).first("SCH")
    assert sch is not None
    return sch.get(1)


async def relay(daemon: DaemonProcess, numbers: range) -> None:
    host, port = daemon.addresses["mllp"]
    client = mllp.Client(host, port)
    try:
        for n in numbers:
            ack = read_ack(parse_hl7(await client.request(siu(n), timeout=10)))
            assert ack.code == AckCode.AA
    finally:
        await client.aclose()


@asynccontextmanager
async def daemon_process(
    data_dir: Path, environment: dict[str, str]
) -> AsyncIterator[DaemonProcess]:
    proc = DaemonProcess(data_dir, env=environment)
    await asyncio.to_thread(proc.start)
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.kill)


async def sender_active(daemon: DaemonProcess, destination: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(daemon.url("/metrics")) as r:
        text = await r.text()
    return f'radsched_emr_sender_active{{destination="{destination}"}} 1.0' in text


async def test_sigkill_between_commit_and_delivery_resends_same_msh10(
    data_dir: Path, database_url: str
) -> None:
    held: list[bytes] = []

    def emr_reply(payload: bytes) -> bytes | None:
        if not held:
            held.append(payload)
            return None  # received, never acknowledged: the daemon is killed while it waits
        return ack_for(payload)

    async with LoopbackPeer(emr_reply) as emr:
        environment = env(database_url, RADSCHED_EMR_ROUTES=f"RADCO=127.0.0.1:{emr.port}")
        environment["RADSCHED_EMR_ACK_TIMEOUT_S"] = "60"
        async with daemon_process(data_dir, environment) as first:
            await relay(first, range(1, 4))  # committed and ACKed to the RIS
            await emr.wait_for_frames(1, timeout=30)
            first.signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 30)
        async with daemon_process(data_dir, environment):
            frames = await emr.wait_for_frames(4, timeout=30)
    first_try, *after_restart = frames
    assert appointment(first_try) == "APT00001"
    assert [appointment(f) for f in after_restart] == ["APT00001", "APT00002", "APT00003"]
    assert parse_hl7(after_restart[0]).control_id == parse_hl7(first_try).control_id


async def test_two_daemons_one_database_fifo_once_and_takeover(
    data_dir: Path, database_url: str
) -> None:
    seen: dict[str, bytes] = {}
    order: list[str] = []

    async def emr_reply(payload: bytes) -> bytes:
        # An EMR de-duplicates on MSH-10; record first sightings in arrival order.
        cid = parse_hl7(payload).control_id
        if cid not in seen:
            seen[cid] = payload
            order.append(appointment(payload))
        await asyncio.sleep(
            0.005
        )  # a realistic, not instant, EMR so the queue is in flight when we kill
        return ack_for(payload)

    other_dir = private_tmp("radsched-data-b-")
    try:
        async with LoopbackPeer(emr_reply) as emr:
            environment = env(database_url, RADSCHED_EMR_ROUTES=f"RADCO=127.0.0.1:{emr.port}")
            # A reply timeout is a legitimate re-send; on a loaded machine keep it out of this test.
            environment["RADSCHED_EMR_ACK_TIMEOUT_S"] = "20"
            dest = f"127.0.0.1:{emr.port}"
            async with (
                daemon_process(data_dir, environment) as a,
                daemon_process(other_dir, environment) as b,
            ):
                # The RIS reaches both daemons (an L4 balancer in front): interleave the sends.
                await relay(a, range(1, 41))
                await relay(b, range(41, 81))
                await relay(a, range(81, 121))
                await emr.wait_for_frames(120, timeout=30)
                # Nothing is delivered twice without a failure.
                assert len(emr.received) == 120, (a.log() + b.log())[-4000:]
                expected = [f"APT{n:05d}" for n in range(1, 121)]
                assert order == expected  # FIFO in commit order, across both daemons' intake

                active = [d for d in (a, b) if await sender_active(d, dest)]
                assert len(active) == 1
                holder = active[0]
                survivor = b if holder is a else a
                await relay(survivor, range(121, 321))
                await emr.wait_for_frames(150, timeout=30)
                holder.signal(signal.SIGKILL)
                await asyncio.to_thread(holder.wait, 30)
                deadline = asyncio.get_running_loop().time() + 30
                while len(seen) < 320:
                    assert asyncio.get_running_loop().time() < deadline, "no takeover"
                    await emr.wait_for_frames(len(emr.received) + 1, timeout=30)
                assert order == [f"APT{n:05d}" for n in range(1, 321)]
                assert await sender_active(survivor, dest)
                # A takeover re-sends at most the unflushed tail, always with the original MSH-10.
                assert len(emr.received) - len(seen) <= 2 * 25  # two write-back batches
    finally:
        shutil.rmtree(other_dir, ignore_errors=True)
