"""Shared by the benchmarks: each one owns one ``## `` section of docs/performance.md."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def write_section(section: str, text: str, doc_path: Path = DOC) -> None:
    """Replace (or append) the section headed ``section``, leaving every other section untouched."""
    doc = doc_path.read_text() if doc_path.exists() else "# Performance\n"
    start = doc.find(section + "\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(section))
        rest = doc[end + 1 :] if end >= 0 else ""
        doc = doc[:start] + text + ("\n" + rest if rest else "")
    doc_path.write_text(doc.rstrip("\n") + "\n")
