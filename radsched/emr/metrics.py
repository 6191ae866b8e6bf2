"""Prometheus families of the EMR outbox, labelled by destination name (never by patient data).

Counters are per daemon (sum them across daemons in PromQL); the queue gauges are read from the shared
table, so every daemon reports the same value (use ``max by (destination)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class EmrMetrics:
    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.queued = Gauge(
            "radsched_emr_queued",
            "SIU messages waiting for delivery, per destination (from the shared outbox table).",
            ["destination"],
            registry=registry,
        )
        self.oldest_age = Gauge(
            "radsched_emr_oldest_pending_age_seconds",
            "Age of the oldest undelivered SIU per destination (0 when the queue is empty).",
            ["destination"],
            registry=registry,
        )
        self.dead_letters = Gauge(
            "radsched_emr_dead_letters",
            "Dead-lettered SIU rows per destination ('unrouted' for facilities without a route).",
            ["destination"],
            registry=registry,
        )
        self.delivered = Counter(
            "radsched_emr_delivered_total",
            "SIU messages delivered (AA/CA) by this daemon.",
            ["destination"],
            registry=registry,
        )
        self.retries = Counter(
            "radsched_emr_retries_total",
            "Failed delivery attempts that will be retried, by reason (ae, ar, unreachable, timeout, connection_lost, bad_ack).",
            ["destination", "reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "radsched_emr_dead_lettered_total",
            "SIU messages dead-lettered by this daemon, by reason (ae, unrouted, undecryptable).",
            ["destination", "reason"],
            registry=registry,
        )
        self.unrouted = Counter(
            "radsched_emr_unrouted_total",
            "Appointments whose facility matched no EMR route (dead-lettered; alert on any increase).",
            ["origin"],
            registry=registry,
        )
        self.last_success = Gauge(
            "radsched_emr_last_success_timestamp_seconds",
            "Unix time of the last SIU delivered to the destination by this daemon.",
            ["destination"],
            registry=registry,
        )
        self.failing_seconds = Gauge(
            "radsched_emr_failing_seconds",
            "How long the destination has been failing without a success (0 when healthy), as seen by the daemon draining it.",
            ["destination"],
            registry=registry,
        )
        self.draining = Gauge(
            "radsched_emr_sender_active",
            "1 when this daemon holds the destination's lock and drains its queue.",
            ["destination"],
            registry=registry,
        )

    def destination(self, name: str) -> None:
        """Create the series of a destination so dashboards show zeros instead of gaps."""
        self.queued.labels(name)
        self.oldest_age.labels(name)
        self.dead_letters.labels(name)
        self.delivered.labels(name)
        self.draining.labels(name).set(0)
        self.failing_seconds.labels(name)
