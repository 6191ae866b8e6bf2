"""Benchmarks: each subpackage is runnable as ``python -m bench.NAME`` and writes its own section of
docs/performance.md; ``python -m bench`` (``make bench``) runs them all in one go."""
