"""Small in-memory caches for the scheduling service: a TTL cache with single-flight loading, and a
bounded map of recently offered slots.

Single flight: while one caller loads a key, later callers for the same key await the same load instead of
sending their own query to the RIS. That is always safe (they would have received the same answer) and is
what keeps a burst of identical requests from queueing on the one RIS connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

from channels import Slot
from radsched.tasks import spawn

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Monotonic = Callable[[], float]


class SingleFlight(Generic[K, V]):
    """Coalesces concurrent loads of the same key; nothing is kept once the load is done.

    The load runs as its own task, so a caller that goes away (an HTTP client disconnecting) does not
    cancel it for the others waiting on it.
    """

    def __init__(self) -> None:
        self._loading: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, load: Callable[[], Coroutine[Any, Any, V]]) -> V:
        task = self._loading.get(key)
        if task is None:
            task = spawn(load(), name="cache-load", awaited=True)
            self._loading[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an error nobody awaited is not reported as lost


class TtlCache(Generic[K, V]):
    """Values kept for ``ttl`` seconds after they were loaded; ``ttl <= 0`` disables keeping them."""

    def __init__(self, ttl: float, *, monotonic: Monotonic = time.monotonic) -> None:
        self.ttl = ttl
        self._now = monotonic
        self._values: dict[K, tuple[float, V]] = {}
        self._flight: SingleFlight[K, V] = SingleFlight()

    def peek(self, key: K) -> V | None:
        """The cached value if still fresh, without loading."""
        entry = self._values.get(key)
        if entry is None or self._now() >= entry[0]:
            return None
        return entry[1]

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        cached = self.peek(key)
        if cached is not None:
            return cached

        async def load_and_keep() -> V:
            value = await load()
            if self.ttl > 0:
                self._values[key] = (self._now() + self.ttl, value)
            return value

        return await self._flight.run(key, load_and_keep)

    def invalidate_where(self, predicate: Callable[[K], bool]) -> None:
        for key in [k for k in self._values if predicate(k)]:
            del self._values[key]

    def invalidate(self, key: K | None = None) -> None:
        if key is None:
            self._values.clear()
        else:
            self._values.pop(key, None)


class KnownSlots:
    """Slots recently offered by the RIS, by id, so a booking can be built without a second query.

    Bounded (least recently seen dropped first) and aged: an entry older than ``max_age`` is ignored, since
    the RIS may have changed the slot since.
    """

    def __init__(
        self,
        *,
        capacity: int = 50_000,
        max_age: float = 3600.0,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self._capacity = capacity
        self._max_age = max_age
        self._now = monotonic
        self._slots: OrderedDict[str, tuple[float, Slot]] = OrderedDict()

    def remember(self, slots: list[Slot]) -> None:
        now = self._now()
        for slot in slots:
            self._slots[slot.id] = (now, slot)
            self._slots.move_to_end(slot.id)
        while len(self._slots) > self._capacity:
            self._slots.popitem(last=False)

    def get(self, slot_id: str) -> Slot | None:
        entry = self._slots.get(slot_id)
        if entry is None or self._now() - entry[0] > self._max_age:
            return None
        return entry[1]

    def forget(self, slot_id: str) -> None:
        self._slots.pop(slot_id, None)
