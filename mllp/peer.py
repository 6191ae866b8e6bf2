"""Who is on the other end of a connection: addresses and, with TLS, the certificate."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from dataclasses import dataclass
from typing import Any

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Passed to handlers and hooks. Log it freely: it holds no message content."""

    host: str
    port: int
    local_host: str
    local_port: int
    #: Process-unique connection number, handy to correlate log lines.
    connection_id: int
    #: ``SSLSocket.getpeercert()`` of a *verified* client certificate (mutual TLS), else None.
    peercert: dict[str, Any] | None = None
    #: The client certificate in DER form when one was presented, else None.
    peercert_der: bytes | None = None
    #: Negotiated TLS version (``"TLSv1.3"``) or None on plain TCP.
    tls_version: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}#{self.connection_id}"

    @property
    def subject_cn(self) -> str | None:
        """The commonName of a verified client certificate, if any."""
        if not self.peercert:
            return None
        for rdn in self.peercert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None


def peer_info(transport: asyncio.BaseTransport) -> PeerInfo:
    """Build a :class:`PeerInfo` from a freshly made transport."""
    peer = transport.get_extra_info("peername") or ("?", 0)
    local = transport.get_extra_info("sockname") or ("?", 0)
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None = transport.get_extra_info("ssl_object")
    peercert = der = version = None
    if ssl_object is not None:
        peercert = ssl_object.getpeercert() or None
        der = ssl_object.getpeercert(binary_form=True)
        version = ssl_object.version()
    return PeerInfo(
        host=str(peer[0]),
        port=int(peer[1]),
        local_host=str(local[0]),
        local_port=int(local[1]),
        connection_id=next(_ids),
        peercert=peercert,
        peercert_der=der,
        tls_version=version,
    )
