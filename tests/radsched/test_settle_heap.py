"""``radsched run`` freezes its start-up heap once it is up, and still collects what comes later."""

from __future__ import annotations

import subprocess
import sys

# In a child process: freezing the test runner's own heap would keep its garbage for good.
_PROBE = """
import gc
from radsched.cli import settle_heap

class Node:
    def __init__(self):
        self.me = self

start_up = [Node() for _ in range(1000)]  # alive at start-up, like the daemon's components
settle_heap()
frozen = gc.get_freeze_count()
# Cyclic garbage made after start-up (automatic collections off, so that all of it is still
# there for the one full collection): it must still be found.
gc.disable()
for _ in range(1000):
    Node()
found = gc.collect()
print(frozen, found, len(start_up))
"""


def test_start_up_objects_leave_the_collector_and_later_garbage_is_still_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    frozen, found, kept = map(int, out)
    # Everything alive once the daemon is up (at least the 1000 start-up nodes) is frozen: later
    # full collections no longer walk it, which is what shortens their pauses.
    assert frozen >= 1000
    assert kept == 1000
    # The 1000 cycles made after start-up are collected as before (each Node and its __dict__).
    assert found >= 1000
