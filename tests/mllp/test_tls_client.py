"""The client side of TLS to an EMR or the RIS (issue 11 item 8): ``mllp.tls.client_context``
against a real TLS MLLP peer on loopback, with mutual TLS, the wrong certificate, the wrong name."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

import mllp
from mllp.testing import LoopbackPeer
from mllp.tls import client_context
from tests.mllp.conftest import PKI, message
from tests.mllp.helpers import msa2

REFUSED = (mllp.ConnectError, mllp.ConnectionLost)


def _peer_context(pki: PKI) -> ssl.SSLContext:
    """The EMR's listener: its own certificate, and client certificates required (mutual TLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki.ca)
    return ctx


async def test_mutual_tls_with_a_server_name(pki: PKI) -> None:
    ctx = client_context(pki.ca, cert=pki.client_cert, key=pki.client_key)
    async with (
        LoopbackPeer(ssl=_peer_context(pki)) as peer,
        # Connect by address, verify the certificate's name: as an EMR_ROUTES server_name does.
        mllp.Client("127.0.0.1", peer.port, ssl=ctx, server_hostname="localhost") as client,
    ):
        assert msa2(await client.request(message("MT1"), timeout=5)) == b"MT1"
        assert peer.peers[0].subject_cn == "sms-sender"


async def test_a_client_certificate_from_another_ca_is_refused_and_nothing_delivered(
    pki: PKI, rogue_pki: PKI
) -> None:
    wrong = client_context(pki.ca, cert=rogue_pki.client_cert, key=rogue_pki.client_key)
    async with LoopbackPeer(ssl=_peer_context(pki)) as peer:
        client = mllp.Client("127.0.0.1", peer.port, ssl=wrong)
        # TLS 1.3 completes the client's side of the handshake before the server checks the
        # certificate, so the refusal shows as a failed connect or as a loss; never a reply.
        with pytest.raises(REFUSED):
            await client.request(message("WRONG"), timeout=5)
        await client.aclose()
        assert peer.received == []


async def test_no_client_certificate_is_refused(pki: PKI) -> None:
    async with LoopbackPeer(ssl=_peer_context(pki)) as peer:
        client = mllp.Client("127.0.0.1", peer.port, ssl=client_context(pki.ca))
        with pytest.raises(REFUSED):
            await client.request(message("ANON"), timeout=5)
        await client.aclose()
        assert peer.received == []


async def test_a_server_from_another_ca_is_refused(pki: PKI, rogue_pki: PKI) -> None:
    async with LoopbackPeer(ssl=_peer_context(rogue_pki)) as peer:
        ctx = client_context(pki.ca, cert=pki.client_cert, key=pki.client_key)
        client = mllp.Client("127.0.0.1", peer.port, ssl=ctx)
        with pytest.raises(mllp.ConnectError):
            await client.request(message("X"), timeout=5)
        await client.aclose()
        assert peer.received == []


async def test_a_server_name_the_certificate_does_not_carry_is_refused(pki: PKI) -> None:
    ctx = client_context(pki.ca, cert=pki.client_cert, key=pki.client_key)
    async with LoopbackPeer(ssl=_peer_context(pki)) as peer:
        client = mllp.Client("127.0.0.1", peer.port, ssl=ctx, server_hostname="emr.example")
        with pytest.raises(mllp.ConnectError):
            await client.request(message("X"), timeout=5)
        await client.aclose()
        assert peer.received == []


def test_unreadable_files_name_themselves(pki: PKI, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing.pem"):
        client_context(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="client certificate"):
        client_context(pki.ca, cert=pki.client_cert, key=pki.server_key)  # key of another cert
    with pytest.raises(ValueError, match="needs a client certificate"):
        client_context(pki.ca, key=pki.client_key)
