"""TLS to the EMRs from settings (issue 11 item 8), through the real daemon: an
``EMR_ROUTES`` route with ``tls;ca=…;cert=…;key=…;server_name=…`` delivers the SIU over mutual TLS;
with a certificate the EMR does not trust nothing is delivered and the SIU waits in the outbox.
``RIS_TLS_*`` are tested in tests/ris/test_tls.py."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from channels import parse as parse_hl7
from mllp.testing import LoopbackPeer
from radsched.daemon import running
from radsched.emr.routes import parse_routes
from radsched.errors import ConfigError
from radsched.storage.db import Database
from tests.channels.hl7check import assert_valid_hl7
from tests.emr.helpers import book, booked, eventually, settings
from tests.mllp.conftest import PKI, pki, rogue_pki  # noqa: F401 - the session PKI fixtures


def _emr_context(pki: PKI) -> ssl.SSLContext:  # noqa: F811
    """The EMR's listener: its certificate (CN/SAN localhost), client certificates required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki.ca)
    return ctx


def _route(port: int, ca: Path, cert: Path, key: Path) -> str:
    # By address, with the name the certificate carries: how a VLAN address is usually configured.
    return f"HOSP=127.0.0.1:{port};name=emr;tls;ca={ca};cert={cert};key={key};server_name=localhost"


async def _pending(db: Database) -> int:
    async with db.transaction("test.check") as conn:
        return int(await conn.fetchval("SELECT count(*) FROM hl7_outbox WHERE state = 'pending'"))


async def test_an_emr_route_with_tls_delivers_over_mutual_tls(
    data_dir: Path,
    database_url: str,
    pki: PKI,  # noqa: F811
) -> None:
    async with LoopbackPeer(ssl=_emr_context(pki)) as emr:
        routes = _route(emr.port, pki.ca, pki.client_cert, pki.client_key)
        async with running(settings(data_dir, database_url, emr_routes=routes)) as daemon:
            await book(daemon, booked(1))
            (frame,) = await emr.wait_for_frames(1)
            assert_valid_hl7(frame)
            assert parse_hl7(frame).trigger == "S12"
            assert emr.peers[0].subject_cn == "sms-sender"  # our client certificate was presented

            async def drained() -> bool:
                return await _pending(daemon.db) == 0

            await eventually(drained, what="the SIU marked delivered")


async def test_a_certificate_the_emr_does_not_trust_delivers_nothing_and_keeps_the_siu(
    data_dir: Path,
    database_url: str,
    pki: PKI,  # noqa: F811
    rogue_pki: PKI,  # noqa: F811
) -> None:
    async with LoopbackPeer(ssl=_emr_context(pki)) as emr:
        routes = _route(emr.port, pki.ca, rogue_pki.client_cert, rogue_pki.client_key)
        async with running(settings(data_dir, database_url, emr_routes=routes)) as daemon:
            await book(daemon, booked(2))
            assert daemon.emr is not None
            sender = daemon.emr.senders["emr"]

            async def failed() -> bool:
                return bool(sender.last_failure)

            await eventually(failed, what="a failed TLS delivery")
            assert emr.received == []
            assert await _pending(daemon.db) == 1  # waits in the outbox, not dropped


async def test_a_route_whose_tls_files_do_not_load_stops_start_up(
    data_dir: Path, database_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    routes = f"HOSP=127.0.0.1:6661;name=emr;tls;ca={missing}"
    with pytest.raises(ConfigError, match=r"RADSCHED_EMR_ROUTES: destination 'emr'.*no-such-ca"):
        async with running(settings(data_dir, database_url, emr_routes=routes)):
            pass


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("tls", "TLS needs ca=FILE"),
        ("cert=/c.pem", "TLS needs ca=FILE"),
        ("ca=/ca.pem;cert=/c.pem", "cert= and key= go together"),
        ("ca=", "ca= needs a value"),
        ("ca=/ca.pem;server_name=a b", "server_name= needs a value"),
    ],
)
def test_emr_routes_tls_options_are_checked(options: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_routes(f"*=emr.example:6661;{options}")


def test_one_destination_cannot_have_two_tls_settings() -> None:
    with pytest.raises(ConfigError, match="two different TLS settings"):
        parse_routes("A=emr:6661;name=e;ca=/a.pem, B=emr:6661;name=e")
