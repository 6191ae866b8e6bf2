"""Login attempts rate-limited per user name and per client address (token buckets, per daemon).

Only failures are charged: a person who types the password right is never slowed. Per name, five
failures and then one try every three minutes; per address, twenty and then one a minute. The buckets
are those of the HTTP rate limiter (``radsched/http/ratelimit.py``), in memory, on the console's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from radsched.rest.ratelimit import Rate, TokenBuckets

PER_USER = Rate(per_s=1 / 180, burst=5)
PER_ADDRESS = Rate(per_s=1 / 60, burst=20)


class LoginLimiter:
    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        per_user: Rate = PER_USER,
        per_address: Rate = PER_ADDRESS,
    ) -> None:
        def seconds() -> float:
            return clock().timestamp()

        self._users = TokenBuckets(per_user, "console_login_user", clock=seconds)
        self._addresses = TokenBuckets(per_address, "console_login_address", clock=seconds)

    def wait_s(self, name: str, address: str) -> float:
        """Seconds before this name may try again from this address (0.0: now)."""
        return max(self._users.peek(name.lower()), self._addresses.peek(address))

    def failed(self, name: str, address: str) -> None:
        self._users.charge(name.lower())
        self._addresses.charge(address)
