"""Prometheus families of the order intake and the conversation engine (docs/intake.md, Metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from radsched.modality import DICOM_MODALITIES

__all__ = ["EngineMetrics", "modality_label"]


def modality_label(code: str) -> str:
    """Bounded label values: a free-text modality from a misconfigured sender is ``other``."""
    return code if code in DICOM_MODALITIES else "other"


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.orders = Counter(
            "radsched_orders",
            "Orders received, by modality and outcome (accepted, duplicate, deferred_*, rejected_*, cancelled).",
            ["modality", "outcome"],
            registry=registry,
        )
        self.deferrals = Counter(
            "radsched_sms_deferrals",
            "Orders handed to staff by the SMS engine, by modality and reason.",
            ["modality", "reason"],
            registry=registry,
        )
        self.conversations_ended = Counter(
            "radsched_sms_conversations_ended",
            "Conversations ended, by modality and reason.",
            ["modality", "reason"],
            registry=registry,
        )
        self.texts = Counter(
            "radsched_sms_texts_queued",
            "Texts written to the SMS outbox, by template id.",
            ["template"],
            registry=registry,
        )
        self.transitions = Histogram(
            "radsched_sms_transition_seconds",
            "Time to step and store one conversation event (one transaction), by event.",
            ["event"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    def order(self, modality: str, outcome: str) -> None:
        self.orders.labels(modality_label(modality), outcome).inc()

    def deferred(self, modality: str, reason: str) -> None:
        self.deferrals.labels(modality_label(modality), reason).inc()

    def ended(self, modality: str, reason: str) -> None:
        self.conversations_ended.labels(modality_label(modality), reason).inc()

    def text_queued(self, template_id: str) -> None:
        self.texts.labels(template_id).inc()
