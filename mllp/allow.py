"""Which peers may connect: an allow-list of addresses and networks for ``start_server(allow_peer=)``.

The server asks before it spends anything on a connection (no TLS handshake, no decoder): a refused
peer is closed at once. Addresses, not names: a name would need a DNS look-up per connection and can
be made to say anything by whoever runs the resolver.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PeerAllowList:
    """``PeerAllowList(["10.1.2.3", "192.168.10.0/24", "::1"])``; call it with a peer's address.

    An IPv4 peer seen through an IPv6 listener (``::ffff:10.1.2.3``) matches its IPv4 entry, and an
    IPv6 zone (``fe80::1%eth0``) is ignored. Anything that is not an address is not allowed.
    """

    __slots__ = ("_networks", "_seen")

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[_Network] = []
        for entry in entries:
            text = entry.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(
                    f"{text!r} is not an IP address or network (e.g. 10.1.2.3 or 10.1.0.0/16)"
                ) from None
        if not networks:
            raise ValueError("an allow-list needs at least one address or network")
        self._networks = tuple(networks)
        # Verdicts per address: a peer reconnects from the same few addresses, so remember them
        # (bounded, so that a scan of many addresses cannot grow it without end).
        self._seen: dict[str, bool] = {}

    @classmethod
    def parse(cls, text: str) -> PeerAllowList:
        """From ``"10.1.2.3, 192.168.10.0/24"`` (commas and/or spaces between entries)."""
        return cls(text.replace(",", " ").split())

    @property
    def networks(self) -> tuple[_Network, ...]:
        return self._networks

    def __call__(self, host: str) -> bool:
        verdict = self._seen.get(host)
        if verdict is None:
            verdict = self._allows(host)
            if len(self._seen) >= 4096:
                self._seen.clear()
            self._seen[host] = verdict
        return verdict

    def _allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def __repr__(self) -> str:
        return f"PeerAllowList({[str(n) for n in self._networks]!r})"
