"""MSH-10 for RIS requests: random by default, but a booking that is re-sent gets its original control id.

The dialect builders draw the control id from a callable. Building is synchronous, so presetting the next
value and building right after cannot interleave with another coroutine's build.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from channels import random_control_ids

T = TypeVar("T")


class ControlIds:
    def __init__(self, fresh: Callable[[], str] = random_control_ids) -> None:
        self._fresh = fresh
        self._preset: str | None = None

    def __call__(self) -> str:
        preset, self._preset = self._preset, None
        return preset or self._fresh()

    def fresh(self) -> str:
        return self._fresh()

    def build_with(self, control_id: str, build: Callable[[], T]) -> T:
        """Run ``build`` with ``control_id`` as the next control id it draws."""
        self._preset = control_id
        try:
            return build()
        finally:
            self._preset = None
