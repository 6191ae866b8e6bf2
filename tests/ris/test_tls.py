"""TLS to the RIS: the daemon with the ``[ris]`` TLS table, and ``radsched replay --ca --cert --key``,
both against the simulated RIS behind mutual TLS."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from radsched.simris import SimRis, default_calendar
from tests.mllp.conftest import PKI, pki  # noqa: F401 - the session PKI fixture
from tests.ris.conftest import GatewayFactory, fixed_clock

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def tls_sim(pki: PKI) -> AsyncIterator[SimRis]:  # noqa: F811
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    ris = SimRis(default_calendar(clock=fixed_clock))
    await ris.start(ssl=context)
    yield ris
    await ris.aclose()


async def test_daemon_reaches_the_ris_over_mutual_tls(
    gateway: GatewayFactory,
    tls_sim: SimRis,
    pki: PKI,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "radsched.toml"
    config.write_text(
        f'[ris]\ntls_ca = "{pki.ca}"\ntls_cert = "{pki.client_cert}"\ntls_key = "{pki.client_key}"\n'
    )
    monkeypatch.setenv("RADSCHED_CONFIG", str(config))
    async with gateway(ris_addr=f"127.0.0.1:{tls_sim.port}") as gw:
        status, body = await gw.locations("CT")
        assert status == 200 and body["locations"]
        status, body = await gw.call("GET", "/readyz", key=None)
        assert status == 200 and body["checks"]["ris"] == "ok"

    # Without the client certificate the RIS refuses us: 503, never a silent plain-text fallback.
    config.write_text(f'[ris]\ntls_ca = "{pki.ca}"\n')
    async with gateway(ris_addr=f"127.0.0.1:{tls_sim.port}") as gw:
        status, body = await gw.locations("CT")
        assert status == 503


async def test_ris_tls_settings_reach_a_ris_behind_mutual_tls(
    gateway: GatewayFactory,
    tls_sim: SimRis,
    pki: PKI,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RADSCHED_CONFIG", raising=False)
    monkeypatch.setenv("RADSCHED_RIS_TLS_CA", str(pki.ca))
    monkeypatch.setenv("RADSCHED_RIS_TLS_CERT", str(pki.client_cert))
    monkeypatch.setenv("RADSCHED_RIS_TLS_KEY", str(pki.client_key))
    monkeypatch.setenv("RADSCHED_RIS_TLS_SERVER_NAME", "localhost")
    async with gateway(ris_addr=f"127.0.0.1:{tls_sim.port}") as gw:
        status, body = await gw.locations("CT")
        assert status == 200 and body["locations"]
    # Without the client certificate the RIS refuses us: 503, never a plain-text fallback.
    monkeypatch.delenv("RADSCHED_RIS_TLS_CERT")
    monkeypatch.delenv("RADSCHED_RIS_TLS_KEY")
    async with gateway(ris_addr=f"127.0.0.1:{tls_sim.port}") as gw:
        status, _ = await gw.locations("CT")
        assert status == 503


async def test_replay_over_mutual_tls(tls_sim: SimRis, pki: PKI) -> None:  # noqa: F811
    fixture = ROOT / "fixtures/locations/QRY_Q01.qie-2.3.hl7"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radsched",
        "replay",
        str(fixture),
        "--to",
        f"127.0.0.1:{tls_sim.port}",
        "--ca",
        str(pki.ca),
        "--cert",
        str(pki.client_cert),
        "--key",
        str(pki.client_key),
        "--expect",
        "AA",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out
    assert b"sent 1: AA=1" in out


async def test_sim_ris_command_serves_mutual_tls(pki: PKI) -> None:  # noqa: F811
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radsched",
        "sim-ris",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--tls-ca",
        str(pki.ca),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert sim.stdout is not None
        line = (await asyncio.wait_for(sim.stdout.readline(), 30)).decode()
        addr = line.split("mllp=")[1].split()[0]
        fixture = str(ROOT / "fixtures/locations/QRY_Q01.ch10-2.5.1.hl7")
        tls = ["--ca", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]
        for extra, expected in ((tls, 0), (["--timeout", "2"], 1)):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "radsched",
                "replay",
                fixture,
                "--to",
                addr,
                *extra,
                "--expect",
                "AA",
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == expected, out
    finally:
        sim.terminate()
        await asyncio.wait_for(sim.wait(), 30)
