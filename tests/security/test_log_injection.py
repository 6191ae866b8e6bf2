"""An LF inside MSH-10 (or any control character a peer sends) cannot forge a line in
LOG_FORMAT=text: the daemon logs the control id escaped, one record per line (issue 11, item 6)."""

from __future__ import annotations

import re
import secrets

import mllp
from channels import AckCode, parse, read_ack
from tests.radsched.test_logging import text_log
from tests.security.conftest import SecuredFactory
from tests.smsflow.conftest import Patient, orm

RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +radsched[.\w]*: ")


async def test_an_lf_in_msh_10_stays_inside_its_log_line(secured: SecuredFactory) -> None:
    control_id = "C1\n2026-12-07 08:00:00,000 INFO    radsched.inbound.router: forged\x1d"
    async with secured() as s, mllp.Client(*s.mllp) as client:
        with text_log("radsched") as lines:
            reply = await client.request(
                orm(control_id, "O" + secrets.token_hex(4), Patient()), timeout=10
            )
        # Refused (MSH-10 may not hold control characters), and logged as refused.
        assert read_ack(parse(reply)).code is AckCode.AR
    logged = lines()
    [refused] = [line for line in logged if "message refused" in line]
    assert "control_id=C1\\n2026-12-07 08:00:00,000 INFO" in refused
    assert refused.count("forged\\x1d") == 1
    assert all(RECORD.match(line) for line in logged), logged
