"""Prometheus metrics: one registry per daemon, with process metrics and build info."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

import radsched


def labelled(metric: Any) -> Callable[..., Any]:
    """``metric.labels(*values)``, remembered per values: ``labels()`` takes a lock and builds a key
    on every call, which shows on per-request paths (issue 16). For label sets that stay small
    (routes, message types, outcomes), never for values from the outside."""
    children: dict[tuple[str, ...], Any] = {}

    def child(*values: str) -> Any:
        found = children.get(values)
        if found is None:
            found = children[values] = metric.labels(*values)
        return found

    return child


class ProcessMetrics(ProcessCollector):
    """``process_*`` metrics that survive systemd's ``ProcSubset=pid`` (systemd/radsched.service).

    prometheus_client reads the boot time from ``/proc/stat`` and, when it cannot, silently exports no
    process metrics at all. ``ProcSubset=pid`` hides ``/proc/stat`` (only ``/proc/PID`` stays), so the
    daemon's memory and CPU would vanish from the dashboard. The boot time follows from the clocks
    (what the kernel itself prints as ``btime``), with or without ``/proc/stat``.
    """

    def _boot_time(self) -> float:
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class Metrics:
    """Owns the registry. Components register their own metrics on ``registry``.

    A registry per daemon (rather than the global default) keeps two daemons in one test process,
    or a daemon plus its in-process simulated RIS, from colliding on metric names.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessMetrics(registry=self.registry)
        PlatformCollector(registry=self.registry)
        Info("radsched_build", "Build information.", registry=self.registry).info(
            {"version": radsched.__version__, "python": platform.python_version()}
        )
        self.up = Gauge("radsched_up", "1 while the daemon is running.", registry=self.registry)
        self.ready = Gauge(
            "radsched_ready",
            "1 when every readiness check passed last time.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
