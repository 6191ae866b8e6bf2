"""SIU outbox benchmark: ``python -m bench.siu`` (see docs/performance.md, "SIU outbox")."""
