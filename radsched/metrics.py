"""Prometheus metrics: one registry per daemon, with process metrics and build info."""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

import radsched


class Metrics:
    """Owns the registry. Components register their own metrics on ``registry``.

    A registry per daemon (rather than the global default) keeps two daemons in one test process,
    or a daemon plus its in-process simulated RIS, from colliding on metric names.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
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
