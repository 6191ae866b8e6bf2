"""Logging: JSON or text lines with the logger name and, where there is one, a correlation id.

Logs never carry a phone number, name, MRN or message body; callers log control ids and correlation
ids. As a second line of defence a filter replaces any configured secret that reaches a log record
with ``[redacted]`` — a secret in a log file is a breach even when the log is "internal".

One record is one line: JSON escapes control characters itself, and the text format escapes them
in the message and every field (``\n``, ``\r``, ``\t``, ``\x0b``, ``\x1c``, ``\u2028`` …), so
an LF inside an MSH-10 or a webhook field cannot forge a second record (issue 11, item 6). Only
a traceback continues on further lines, each indented, so none of them can pass for a record.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

# Attributes every LogRecord has; anything else passed via ``extra=`` is emitted as a field.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


@contextmanager
def correlated(value: str | None) -> Iterator[None]:
    """Attach ``value`` as the correlation id of every log line emitted inside the block."""
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = correlation_id.get()
        return True


class RedactingFilter(logging.Filter):
    """Replaces known secret values anywhere in the rendered message or extra fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Short values would redact ordinary words; real secrets here are >= 16 characters.
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        scrubbed = self._scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self._scrub(value))
        if record.exc_info and record.exc_info[1] is not None:
            rendered = logging.Formatter().formatException(record.exc_info)
            if self._scrub(rendered) != rendered:
                record.exc_info = None
                record.exc_text = self._scrub(rendered)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = getattr(record, "correlation_id", None)
        if cid:
            out["correlation_id"] = cid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key != "correlation_id" and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


# C0 controls, DEL, C1 controls (NEL among them) and the Unicode line and paragraph separators:
# everything a terminal, journald, a log shipper or str.splitlines() may take for a line break.
_ESCAPES = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    **{ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"},
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escape_controls(text: str) -> str:
    """``text`` with every control or line-breaking character spelt as a Python-style escape."""
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # logging.Formatter.format, with the message and fields escaped and the trace indented.
        record.message = escape_controls(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extras = [
            f"{k}={escape_controls(str(v))}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD_ATTRS and k != "correlation_id" and not k.startswith("_")
        ]
        cid = getattr(record, "correlation_id", None)
        if cid:
            extras.insert(0, f"cid={escape_controls(str(cid))}")
        if extras:
            line = f"{line} [{' '.join(extras)}]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for trace in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if trace:
                line += "".join(f"\n    {escape_controls(part)}" for part in trace.split("\n"))
        return line


_redactor = RedactingFilter()


def configure_logging(
    fmt: Literal["json", "text"] | None, *, level: int = logging.INFO, stream: Any = None
) -> RedactingFilter:
    """Install one handler on the root logger. Returns the redaction filter to feed secrets to."""
    out = stream if stream is not None else sys.stderr
    if fmt is None:
        fmt = "text" if getattr(out, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler.addFilter(_redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party loggers that would log request lines with query strings at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    logging.getLogger("aiorun").setLevel(logging.WARNING)
    return _redactor
