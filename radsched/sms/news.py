"""The SMS side of "the RIS changed your appointment" (issue 13 item 4): the lifecycle calls
``on_ris_change`` in the transaction that records the change, and the text is queued in it too, so
the change and its one text commit together (a retransmitted SIU finds the record unchanged and
texts nothing)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from radsched.conversation.news import AppointmentNews, news_commands
from radsched.logs import correlation_id
from radsched.privacy import phone_hash
from radsched.sms.driver import Driver
from radsched.storage.audit import AuditTrail
from radsched.storage.consents import get_consent
from radsched.storage.pg import Connection

__all__ = ["NewsTexts"]

log = logging.getLogger("radsched.sms.news")


class NewsTexts:
    def __init__(self, driver: Driver, hash_key: bytes, clock: Callable[[], datetime]) -> None:
        self._driver = driver
        self._hash_key = hash_key
        self._clock = clock

    async def on_ris_change(self, conn: Connection, phone: str, news: AppointmentNews) -> None:
        now = self._clock()
        hashed = phone_hash(self._hash_key, phone)
        consent = await get_consent(conn, hashed)
        commands = news_commands(news, consent, self._driver.cfg)
        trail = AuditTrail(hashed, None, correlation_id.get() or "-", news.modality, consent.value)
        result = await self._driver.perform_outside(
            conn, commands, trail=trail, phone=phone, now=now, modality=news.modality
        )
        log.info(
            "patient told of a change at the RIS",
            extra={"kind": news.kind.value, "texts": result.texts},
        )
