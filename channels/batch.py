"""Splitting a file of several messages (fixtures, replay input) into one payload per message.

A new message starts at a line beginning with ``MSH`` that follows a blank line (``\\n\\n``, ``\\r\\r``,
``\\r\\n\\r\\n``) or the start of the file. Splitting only at "blank line + MSH" keeps a blank line *inside*
a message (seen in hand-edited files) from cutting it in two. MLLP-framed files are the transport's business
(``mllp``), not this module's.
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(rb"(?:\r\n|\r|\n)[ \t]*(?:\r\n|\r|\n)\s*(?=MSH)")


def split_messages(data: bytes) -> list[bytes]:
    """Payloads in ``data``, each stripped of surrounding blank lines; empty input gives ``[]``."""
    parts = _BOUNDARY.split(data)
    return [p.strip(b"\r\n\t ") for p in parts if p.strip(b"\r\n\t \x00")]
