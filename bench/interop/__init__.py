"""Corpus check: ``python -m bench.interop`` (docs/interop.md)."""
