"""Reading what an HTTP caller sends (JSON bodies, query strings) so that nothing in it reaches a 500.

* Nesting is bounded *before* ``json.loads`` recurses: a body nested deeper than ``max_depth``
  (arrays and objects, counted outside strings) is refused naming the top-level field it is in.
* Text may not hold C0 control characters, DEL or lone surrogates (``"\\u0000"``, ``"\\ud800"``):
  PostgreSQL ``text`` cannot store NUL, a lone surrogate cannot be encoded as UTF-8, and no field of
  these APIs is free text where a tab or newline would mean anything. Keys are checked like values.
  HTML forms (the console's notes are textareas) may hold tabs and line breaks: :func:`form`.

Errors are :class:`BadInput` with a message ``"<field>: <what is wrong>"`` that never quotes the
value (it may be an MRN or a phone number); callers answer it as a 400 ``invalid_request``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = [
    "MAX_DEPTH",
    "BadInput",
    "check_text",
    "form",
    "json_object",
    "query",
    "read_json_object",
]

MAX_DEPTH = 8  # every body we accept is a flat object; 8 leaves room and bounds the parser
NOT_ALLOWED = "has characters that are not allowed"

# A JSON string (possibly unterminated), or one of the characters that nest or name a key.
_TOKENS = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}:]', re.DOTALL)
_STRINGS = re.compile(r'"(?:[^"\\]+|\\.)*"?', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"\[\]|\{\}")
_NAMING_BUDGET = 4096
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_FORBIDDEN_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class BadInput(Exception):
    """What the caller sent is unusable; ``str()`` is ``"<field>: <reason>"``."""


def _name(token: str | None) -> str:
    """A key as it may appear in an error message: a plain short name, else ``body``."""
    if token is None:
        return "body"
    try:
        name = json.loads(token)
    except ValueError:
        return "body"
    return name if isinstance(name, str) and _NAME.match(name) else "body"


def _nests_deeper(text: str, max_depth: int) -> bool:
    """Whether balanced brackets outside strings nest deeper than ``max_depth``, at C speed.

    Strings and everything but brackets are removed, then the innermost pairs ``max_depth`` times:
    what still holds a pair was deeper. (Unbalanced brackets are left to ``json.loads`` to refuse.)
    """
    skeleton = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    for _ in range(max_depth):
        skeleton, removed = _PAIR.subn("", skeleton)
        if not removed:
            return False
    return _PAIR.search(skeleton) is not None


def _too_deep(text: str, max_depth: int) -> str | None:
    """The field whose value nests deeper than ``max_depth``, ``body`` at the top, or None."""
    if text.count("[") + text.count("{") <= max_depth:
        return None  # the usual flat body: no scan needed
    if not _nests_deeper(text, max_depth):
        return None
    # Name the top-level field it happens in, within a budget of tokens (else just "body").
    depth = 0
    key: str | None = None  # the top-level key being read
    last: str | None = None  # the last string seen at depth 1
    for match in itertools.islice(_TOKENS.finditer(text), _NAMING_BUDGET):
        token = match.group()
        head = token[0]
        if head == '"':
            if depth == 1:
                last = token
        elif head in "[{":
            depth += 1
            if depth > max_depth:
                return _name(key)
        elif head in "]}":
            depth -= 1
        elif depth == 1:  # ':' after a top-level key
            key = last
    return "body"


def check_text(value: Any, field: str, *, multiline: bool = False) -> None:
    """Refuse control characters and lone surrogates anywhere in ``value`` (strings, keys, items).

    ``multiline``: tab, CR and LF are allowed (a textarea's text).
    """
    if isinstance(value, str):
        if (_FORBIDDEN_MULTILINE if multiline else _FORBIDDEN).search(value):
            raise BadInput(f"{field}: {NOT_ALLOWED}")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, field)
            check_text(item, field)
    elif isinstance(value, list):
        for item in value:
            check_text(item, field)


def json_object(raw: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse a request body that must be one JSON object of text that PostgreSQL can store."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("body: not valid JSON (not UTF-8)") from None
    if (deep := _too_deep(text, max_depth)) is not None:
        raise BadInput(f"{deep}: nested more than {max_depth} levels deep")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BadInput("body: not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInput("body: must be a JSON object")
    # json.loads refuses raw control characters in strings, and UTF-8 cannot carry a surrogate: what
    # is refused below can only arrive as an escape (or a raw DEL). Without either, skip the walk.
    if "\\" in text or "\x7f" in text:
        _check_fields(data, "body", multiline=False)
    return data


def query(values: Mapping[str, str]) -> dict[str, str]:
    """A query string as a dict, refusing control characters and lone surrogates in any value."""
    out = dict(values)
    _check_fields(out, "query", multiline=False)
    return out


def form(values: Mapping[str, Any]) -> None:
    """Refuse NUL, control characters but tab and line breaks, and lone surrogates in a form."""
    _check_fields(values, "form", multiline=True)


def _check_fields(values: Mapping[str, Any], whole: str, *, multiline: bool) -> None:
    for key, value in values.items():
        name = key if _NAME.match(key) else whole
        check_text(key, name)
        check_text(value, name, multiline=multiline)


async def read_json_object(request: web.Request, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """:func:`json_object` of the request's body (bounded by the app's ``client_max_size``)."""
    return json_object(await request.read(), max_depth=max_depth)
