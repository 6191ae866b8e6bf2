"""Log lines carry a logger name and correlation id, and never a configured secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from radsched.daemon import running
from radsched.logs import TextFormatter, configure_logging, correlated
from radsched.settings import Settings


def test_json_lines_have_logger_and_correlation_id() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    with correlated("ctl-123"):
        logging.getLogger("radsched.test").info("hello", extra={"control_id": "MSG1"})
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["logger"] == "radsched.test"
    assert line["correlation_id"] == "ctl-123"
    assert line["control_id"] == "MSG1"


async def test_no_secret_setting_ever_reaches_the_log(data_dir: Path) -> None:
    out = io.StringIO()
    redactor = configure_logging("json", level=logging.DEBUG, stream=out)
    api_key = "api-key-that-must-not-leak-0123456789"
    settings = Settings(
        data_dir=data_dir,
        http_listen="127.0.0.1:0",
        mllp_listen="127.0.0.1:0",
        api_keys=api_key,  # type: ignore[arg-type]
        twilio_auth_token="twilio-token-must-not-leak-987654",  # type: ignore[arg-type]
    )
    async with running(settings, redactor=redactor) as daemon, aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz", "/metrics", "/nope"):
            async with http.get(f"http://{daemon.listening['http']}{path}") as resp:
                await resp.read()
        # A careless log call that interpolates a secret is still scrubbed.
        logging.getLogger("radsched.careless").warning("key is %s", api_key)
        secrets = daemon.secrets.values()
    text = out.getvalue()
    assert "[redacted]" in text
    for secret in (*secrets, api_key, "twilio-token-must-not-leak-987654"):
        assert secret not in text
    for line in text.splitlines():
        assert "logger" in json.loads(line)


@contextmanager
def text_log(name: str) -> Iterator[Callable[[], list[str]]]:
    """LOG_FORMAT=text lines of one logger, without touching the root logger (caplog's)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        # splitlines() breaks at every line boundary Python knows (\x0b, \x1c, \x85, \u2028 …).
        yield lambda: out.getvalue().splitlines()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


FORGED = "\r\n2026-12-07 INFO forged"


def test_a_text_line_cannot_be_forged_by_control_characters() -> None:
    with text_log("radsched.test.forge") as lines:
        log = logging.getLogger("radsched.test.forge")
        log.warning("refused %s", FORGED, extra={"control_id": "C1\n\x0b\x1c\x1d\x85\u2028\x00x"})
        log.info("ok", extra={"correlation_id": "cid\nforged"})
    first, second = lines()
    assert first.endswith(
        "refused \\r\\n2026-12-07 INFO forged [control_id=C1\\n\\x0b\\x1c\\x1d\\x85\\u2028\\x00x]"
    )
    assert second.endswith("ok [cid=cid\\nforged]")


def test_a_traceback_continues_only_on_indented_lines() -> None:
    with text_log("radsched.test.trace") as lines:
        try:
            raise ValueError("bad control id" + FORGED)
        except ValueError:
            logging.getLogger("radsched.test.trace").exception("failed")
    first, *trace = lines()
    assert first.endswith("failed") and trace
    assert all(line.startswith("    ") for line in trace)
    # The message's own LF breaks the trace's line, but what follows it is indented like the rest.
    assert trace[-2:] == ["    ValueError: bad control id\\r", "    2026-12-07 INFO forged"]


@pytest.fixture(autouse=True)
def _restore_logging() -> None:
    yield
    configure_logging("text")
