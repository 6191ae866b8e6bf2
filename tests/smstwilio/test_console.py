"""Console mode (no TWILIO_ACCOUNT_SID): texts are printed to standard output, never logged."""

from __future__ import annotations

import logging
import secrets
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from radsched.daemon import running
from radsched.errors import ConfigError
from radsched.privacy import phone_hash
from radsched.settings import Settings
from radsched.storage.sms_outbox import enqueue_text
from radsched.twilio.providers import ConsoleProvider, TwilioProvider, make_provider, mask_number

BODY = "Lakeside Imaging: reply YES to schedule your exam."


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+12125550123", "+1******0123"),
        ("+442071838750", "+44******8750"),
        ("+4930123", "+49*****"),
    ],
)
def test_console_shows_country_code_and_last_four_digits(number: str, masked: str) -> None:
    assert mask_number(number) == masked


def test_provider_choice_follows_the_account_sid() -> None:
    assert isinstance(
        make_provider(account_sid=None, auth_token="t", sender=None, api_url="https://x"),
        ConsoleProvider,
    )
    with pytest.raises(ConfigError, match="RADSCHED_TWILIO_FROM"):
        make_provider(account_sid="AC1", auth_token="t", sender=None, api_url="https://x")


async def test_messaging_service_sid_is_sent_as_such() -> None:
    provider = make_provider(
        account_sid="AC" + "1" * 32, auth_token="t", sender="MG" + "2" * 32, api_url="http://x"
    )
    assert isinstance(provider, TwilioProvider)
    await provider.aclose()


async def test_console_daemon_prints_the_text_and_marks_it_sent(
    data_dir: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(
        data_dir=data_dir,
        database_url=SecretStr(database_url),
        http_listen="127.0.0.1:0",
        mllp_listen="127.0.0.1:0",
        phone_hash_key=SecretStr(secrets.token_hex(32)),
        phi_key=SecretStr(secrets.token_hex(32)),
    )
    async with running(settings) as daemon:
        assert daemon.sms_outbox is not None and daemon.sms_outbox.sender is not None
        async with daemon.db.transaction("test.enqueue") as conn:
            outbox_id = await enqueue_text(
                conn,
                phi=daemon.phi,
                to_e164="+12125550123",
                body=BODY,
                template_id="consent_request",
                phone_hash=phone_hash(daemon.hash_key, "+12125550123"),
                conversation_id=uuid.uuid4(),
                correlation_id="cid-console",
                now=daemon.clock(),
            )
        daemon.sms_outbox.wake()
        await daemon.sms_outbox.sender.wait_idle(10)
        async with daemon.db.transaction("test.row") as conn:
            row = await conn.fetchrow("SELECT * FROM sms_outbox WHERE id = $1", outbox_id)
    assert row is not None and row["state"] == "sent" and row["payload"] is None
    assert row["provider_sid"].startswith("CONSOLE")
    out = capsys.readouterr().out
    assert f"[SMS to +1******0123 | consent_request] {BODY}\n" in out
    logged = " ".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert BODY not in logged and "+12125550123" not in logged
