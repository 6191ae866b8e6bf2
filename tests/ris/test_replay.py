"""``radsched replay`` against ``radsched sim-ris`` (both real subprocesses), and replay's input handling."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mllp import encode_frame
from radsched.replay import load, normalise, split_payloads

ROOT = Path(__file__).resolve().parents[2]
QUERIES = [
    ROOT / "fixtures/locations/QRY_Q01.ch10-2.5.1.hl7",
    ROOT / "fixtures/locations/QRY_Q01.qie-2.3.hl7",
    ROOT / "fixtures/slots/QRY_Q01.qie-2.3.hl7",
    ROOT / "fixtures/slots/SQM_S25.ch10-2.5.1.hl7",
]


async def _radsched(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radsched",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def sim_ris() -> AsyncIterator[tuple[str, str]]:
    """``radsched sim-ris`` on port 0 with a control channel; yields (mllp address, control URL)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radsched",
        "sim-ris",
        "--listen",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert line.startswith("sim-ris listening"), line
    fields = dict(item.split("=", 1) for item in line.split()[2:])
    try:
        yield fields["mllp"], "http://" + fields["control"]
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_replay_expect_aa_passes_and_a_nak_fault_fails(sim_ris: tuple[str, str]) -> None:
    addr, control = sim_ris
    code, out, _ = await _radsched("replay", *map(str, QUERIES), "--to", addr, "--expect", "AA")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert len(lines) == 5 and all(" AA " in line for line in lines[:4])
    assert lines[-1].startswith("sent 4: AA=4; latency p50")

    async with (
        aiohttp.ClientSession() as http,
        http.put(control + "/faults", json={"nak": "AE"}) as r,
    ):
        assert (await r.json())["nak"] == "AE"
    # A message not seen before (a duplicate would get its original AA again).
    fresh = str(ROOT / "fixtures/booking/ORM_O01.qie-2.3.hl7")
    code, out, err = await _radsched("replay", fresh, "--to", addr, "--expect", "AA")
    assert code == 1
    assert " AE " in out and "differ from AA" in err

    async with aiohttp.ClientSession() as http:
        async with http.delete(control + "/faults") as r:
            assert (await r.json())["nak"] == ""
        async with http.get(control + "/stats") as r:
            stats = await r.json()
    assert stats["frames"]["QRY^Q01"] >= 3 and stats["service_us"]["count"] >= 4
    # A directory works too; the booking fixtures name slots the simulator never offered: AE.
    code, out, _ = await _radsched(
        "replay",
        str(ROOT / "fixtures/booking/SRM_S01.ch10-2.5.1.hl7"),
        "--to",
        addr,
        "--expect",
        "AE",
    )
    assert code == 0, out


async def test_replay_unreachable_peer_fails() -> None:
    code, out, _ = await _radsched(
        "replay", str(QUERIES[0]), "--to", "127.0.0.1:9", "--timeout", "1"
    )
    assert code == 1
    assert "error=1" in out


def test_input_normalisation(tmp_path: Path) -> None:
    assert normalise(b"MSH|a\nPID|1\n") == b"MSH|a\rPID|1\r"
    assert normalise(b"MSH|a\r\nPID|1\r\n") == b"MSH|a\rPID|1\r"
    assert normalise(b"MSH|a\rNTE|1||x\ny") == b"MSH|a\rNTE|1||x\ny\r"  # CR present: LF is data
    framed = encode_frame(b"MSH|1\rPID|1\r") + b"\r\n" + encode_frame(b"MSH|2\nPID|2\n")
    assert split_payloads(framed) == [b"MSH|1\rPID|1\r", b"MSH|2\rPID|2\r"]
    assert split_payloads(b"MSH|1\nPID|1\n\n\nMSH|2\nPID|2\n") == [
        b"MSH|1\rPID|1\r",
        b"MSH|2\rPID|2\r",
    ]
    (tmp_path / "b.hl7").write_bytes(b"MSH|1\n\nMSH|2\n")
    (tmp_path / "a.hl7").write_bytes(b"MSH|0\n")
    (tmp_path / "skip.txt").write_bytes(b"MSH|9\n")
    labels = [label for label, _ in load([tmp_path])]
    assert labels == [str(tmp_path / "a.hl7"), f"{tmp_path / 'b.hl7'}#1", f"{tmp_path / 'b.hl7'}#2"]
    assert json.dumps(labels)
