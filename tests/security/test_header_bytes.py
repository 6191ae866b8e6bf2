"""Credential headers carrying bytes that are not UTF-8 (issue 11 item 6): refused as unproven
(401/403), never a 500 with a traceback. Sent over a raw socket, since HTTP clients will not send
such bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.security.conftest import Secured, SecuredFactory


@pytest.fixture
async def live(secured: SecuredFactory) -> AsyncIterator[Secured]:
    async with secured(rate_limit_auth_failures_per_min=0) as s:
        yield s


async def raw_status(s: Secured, method: str, path: str, header: bytes, body: bytes = b"") -> int:
    addr = s.daemon.listening["http"]
    reader, writer = await asyncio.open_connection(addr.host, addr.port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + header
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("method", "path", "header"),
    [
        ("GET", "/api/ris/locations?modality=CR", b"X-API-Key: \xff\xfe-key"),
        ("GET", "/api/ris/locations?modality=CR", b"Authorization: Bearer \xff\xfe"),
        ("POST", "/api/orders", b"Authorization: Bearer \xc3\x28"),
        ("POST", "/sms/inbound", b"X-Twilio-Signature: \xff\xfe="),
    ],
)
async def test_non_utf8_credentials_are_refused_not_500(
    live: Secured, method: str, path: str, header: bytes
) -> None:
    status = await raw_status(live, method, path, header, b"Body=x" if method == "POST" else b"")
    assert status in (401, 403)
