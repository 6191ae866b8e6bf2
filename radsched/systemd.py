"""sd_notify without a dependency: READY=1, STOPPING=1, STATUS= and the watchdog keep-alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

log = logging.getLogger("radsched.systemd")


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET`` when systemd (or a test) provides one; else does nothing."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> None:
        if not self.address:
            return
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]  # abstract namespace socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall("\n".join(lines).encode())
        except OSError as exc:
            log.warning("sd_notify failed", extra={"error": exc.strerror or str(exc)})


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC (systemd's advice), or None when the watchdog is off for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000


async def watchdog_loop(notifier: Notifier, interval: float) -> None:
    """Pings the watchdog from the event loop itself: a wedged loop stops the pings and gets restarted."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
