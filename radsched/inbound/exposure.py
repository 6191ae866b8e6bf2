"""The start-up warning for an MLLP listener anyone on the network can reach (issue 11 item 3)."""

from __future__ import annotations

import ipaddress
import logging

from mllp import PeerAllowList
from radsched.settings import HostPort

log = logging.getLogger("radsched.exposure")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a wildcard or any other address is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def warn_if_exposed(addr: HostPort, *, tls: bool, allow_list: PeerAllowList | None) -> bool:
    """Log a warning when ``addr`` is reachable off this host with neither TLS nor an allow-list.

    Not an error: a RIS on a trusted segment with a firewall in front is a documented set-up. But
    the operator should know that anyone who reaches the port can send orders and cancels.
    Returns True when it warned.
    """
    if is_loopback(addr.host) or tls or allow_list is not None:
        return False
    log.warning(
        "MLLP_LISTEN %s is reachable from other hosts and neither MLLP_TLS_CERT nor "
        "MLLP_ALLOWED_PEERS is set: any host that reaches this port can send orders; "
        "set MLLP_ALLOWED_PEERS to the RIS addresses (docs/security.md)",
        addr,
    )
    return True
