"""Tiny value readers shared by the parsers."""

from __future__ import annotations


def int_or_none(text: str) -> int | None:
    """An integer field (NM/duration), or None when empty or not an integer."""
    try:
        return int(text.strip())
    except ValueError:
        return None
