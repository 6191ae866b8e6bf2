"""Socket options both sides set. Kept apart so server and client do not duplicate them."""

from __future__ import annotations

import asyncio
import contextlib
import socket


def tune(transport: asyncio.BaseTransport, *, keepalive: bool) -> None:
    """TCP_NODELAY (an ACK must leave now, not after Nagle's delay) and optional TCP keepalive.

    Keepalive is the only heartbeat MLLP has: firewalls silently drop idle sessions, and without probes
    a client would only learn it on the next request. Probes start after 60 s idle, every 10 s, 5 tries.
    """
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    # Best effort: some platforms or wrapped sockets refuse an option; none of them is essential.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not keepalive:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 5)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
