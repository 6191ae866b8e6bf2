"""Relay mode: SIU from the RIS on MLLP_LISTEN, committed, ACKed and forwarded to every routed EMR."""

from __future__ import annotations

from pathlib import Path

import asyncpg

import mllp
from channels import AckCode, read_ack
from channels import parse as parse_hl7
from mllp.testing import LoopbackPeer
from radsched.daemon import running
from tests.channels.hl7check import assert_valid_hl7
from tests.emr.helpers import eventually, settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "siu"


def fixture(name: str) -> bytes:
    raw = (FIXTURES / name).read_bytes()
    return raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")


def without_msh(payload: bytes) -> bytes:
    return payload.split(b"\r", 1)[1]


async def test_relay_to_two_routed_emrs(data_dir: Path, database_url: str) -> None:
    s12 = fixture("SIU_S12.relay-from-ris.2.3.hl7")
    s15 = fixture("SIU_S15.relay-cancel-from-ris.2.5.1.hl7")
    async with LoopbackPeer() as epic, LoopbackPeer() as athena:
        routes = (
            f"RADCO=127.0.0.1:{epic.port};receiver=EPIC^HOSP,"
            f"RADCO=127.0.0.1:{athena.port};qie-2.3;name=athena,"
            f"*=127.0.0.1:1;name=elsewhere"
        )
        async with running(settings(data_dir, database_url, emr_routes=routes)) as daemon:
            host, port = daemon.listening["mllp"].host, daemon.listening["mllp"].port
            ris = mllp.Client(host, port)
            try:
                first = read_ack(parse_hl7(await ris.request(s12, timeout=5)))
                again = read_ack(parse_hl7(await ris.request(s12, timeout=5)))  # a RIS resend
                cancel = read_ack(parse_hl7(await ris.request(s15, timeout=5)))
            finally:
                await ris.aclose()
            assert first.code == again.code == cancel.code == AckCode.AA
            assert first.control_id == "RIS000200"

            to_epic = await epic.wait_for_frames(2)
            to_athena = await athena.wait_for_frames(2)
            for frames, receiver in ((to_epic, ("EPIC", "HOSP")), (to_athena, ("EMR", "RADCO"))):
                assert [parse_hl7(f).trigger for f in frames] == ["S12", "S15"]
                for frame, original in zip(frames, (s12, s15), strict=True):
                    assert_valid_hl7(frame)
                    msg, src = parse_hl7(frame), parse_hl7(original)
                    assert (msg.receiving_application, msg.receiving_facility) == receiver
                    assert (msg.sending_application, msg.sending_facility) == (
                        "SYNAPSERIS",
                        "RADCO",
                    )
                    assert msg.control_id != src.control_id
                    assert without_msh(frame) == without_msh(original)  # content as the RIS sent it
                    assert msg.msh.get(7) == src.msh.get(7) and msg.version == src.version

            conn = await asyncpg.connect(database_url)
            try:

                async def delivered() -> bool:
                    states = await conn.fetch("SELECT state FROM hl7_outbox")
                    return [r["state"] for r in states] == ["delivered"] * 4

                await eventually(delivered, what="relayed rows delivered")
                stored = await conn.fetch(
                    "SELECT destination, control_id, source_control_id, origin, message_type,"
                    " appointment_id, facility FROM hl7_outbox ORDER BY id"
                )
            finally:
                await conn.close()
            assert [r["source_control_id"] for r in stored] == ["RIS000200"] * 2 + ["RIS000201"] * 2
            assert {r["origin"] for r in stored} == {"relay"}
            assert {r["facility"] for r in stored} == {"RADCO"}
            assert [r["message_type"] for r in stored] == ["SIU^S12"] * 2 + ["SIU^S15"] * 2
            assert {r["appointment_id"] for r in stored} == {"RIS-APT-0001"}
            sent = {parse_hl7(f).control_id for f in to_epic + to_athena}
            assert sent == {r["control_id"] for r in stored}  # one MSH-10 per destination, recorded


async def test_relay_refuses_an_siu_without_schedule(data_dir: Path, database_url: str) -> None:
    bad = (
        b"MSH|^~\\&|SYNAPSERIS|RADCO|RADSCHED|RADSCHED|20250114103000||SIU^S12|RIS000300|P|2.3\r"
        b"PID|1||MRN00001^^^RADCO^MR||TESTPATIENT^ALPHA\r"
    )
    async with running(settings(data_dir, database_url, emr_routes="*=127.0.0.1:1")) as daemon:
        ris = mllp.Client(daemon.listening["mllp"].host, daemon.listening["mllp"].port)
        try:
            ack = read_ack(parse_hl7(await ris.request(bad, timeout=5)))
        finally:
            await ris.aclose()
        assert ack.code == AckCode.AE and "SCH" in ack.text
        async with daemon.db.transaction("test.check") as conn:
            assert await conn.fetchval("SELECT count(*) FROM hl7_outbox") == 0


async def test_relay_converts_to_the_routes_version(data_dir: Path, database_url: str) -> None:
    """EMR_ROUTES ...;version=: a 2.3 SIU (SCH-11) reaches a 2.8 EMR with TQ1, a 2.8 one a 2.3 EMR."""
    s12 = fixture("SIU_S12.relay-from-ris.2.3.hl7")
    s28 = (FIXTURES.parent / "interop" / "SIU_S12.relay.2.8.hl7").read_bytes().replace(b"\n", b"\r")
    async with LoopbackPeer() as modern, LoopbackPeer() as legacy:
        routes = (
            f"*=127.0.0.1:{modern.port};version=2.8;name=modern,"
            f"*=127.0.0.1:{legacy.port};version=2.3;name=legacy"
        )
        async with running(settings(data_dir, database_url, emr_routes=routes)) as daemon:
            ris = mllp.Client(daemon.listening["mllp"].host, daemon.listening["mllp"].port)
            try:
                for payload in (s12, s28):
                    ack = read_ack(parse_hl7(await ris.request(payload, timeout=5)))
                    assert ack.code == AckCode.AA, ack.text
            finally:
                await ris.aclose()
            to_modern = await modern.wait_for_frames(2)
            to_legacy = await legacy.wait_for_frames(2)
    for frames, version in ((to_modern, "2.8"), (to_legacy, "2.3")):
        for frame in frames:
            msg = parse_hl7(frame)
            assert msg.version == version
            assert (msg.first("TQ1") is not None) == (version == "2.8")
            assert_valid_hl7(frame)
