"""ACK fast-path benchmark: ``python -m bench.ack`` (see docs/performance.md, "ACK building")."""
