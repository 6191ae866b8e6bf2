"""The two late couplings between components, as small objects the composition root builds first.

Everything else is passed down in start order. Two edges point against that order:

* the SMS engine (started before the SMS transport, whose webhooks call it) wakes the outbox sender
  after each commit: it holds an :class:`OutboxBell`, which the transport connects once it exists;
* the scheduling service (started first) runs the EMR component's booking hook: the EMR component
  registers it with ``SchedulingService.add_booking_hook``, and the root starts the booking resolver
  only after every component is up, so no booking is resolved before its hook is in place.
"""

from __future__ import annotations

from radsched.sms.engine import Waker


class OutboxBell:
    """Wakes the SMS outbox sender; silent until the transport has connected it."""

    __slots__ = ("_outbox",)

    def __init__(self) -> None:
        self._outbox: Waker | None = None

    def connect(self, outbox: Waker) -> None:
        if self._outbox is not None:
            raise RuntimeError("the SMS outbox is already connected")
        self._outbox = outbox

    def current(self) -> Waker | None:
        """The connected outbox, or None before the transport has started (or without one)."""
        return self._outbox
