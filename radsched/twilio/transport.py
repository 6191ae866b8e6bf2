"""The SMS transport component: provider, outbox sender task and Twilio webhooks.

Started after the SMS engine, which it calls back (inbound texts, delivery failures) and which
rings its outbox through the ``OutboxBell`` connected here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime

from aiohttp import web
from prometheus_client import CollectorRegistry

from radsched.privacy import PhiBox
from radsched.settings import Settings
from radsched.storage.db import Database
from radsched.storage.webhook_signatures import WebhookSignatures
from radsched.twilio import webhooks
from radsched.twilio.providers import make_provider
from radsched.twilio.sender import OutboxSender, SmsMetrics
from radsched.wiring import OutboxBell

# Logger names are kept from before the move to radsched/twilio: operators filter on them.
log = logging.getLogger("radsched.sms.sender")


class SmsOutbox:
    """The handle the composition root connects to the ``OutboxBell``: wake the sender after a commit.

    Waking is an optimisation: the NOTIFY from ``enqueue_text`` and the sender's periodic sweep
    find the row anyway, so calling ``wake`` is never required for correctness.
    """

    def __init__(self, sender: OutboxSender | None = None) -> None:
        self.sender = sender

    def wake(self) -> None:
        if self.sender is not None:
            self.sender.wake()


async def start(
    stack: AsyncExitStack,
    *,
    settings: Settings,
    auth_token: str,
    db: Database,
    dsn: str,
    phi: PhiBox,
    signatures: WebhookSignatures,
    registry: CollectorRegistry,
    app: web.Application,
    engine: Callable[[], webhooks.InboundSink | None],
    bell: OutboxBell,
    clock: Callable[[], datetime],
) -> SmsOutbox:
    """Start the sender task and add the webhooks; connect ``bell`` to the outbox."""
    provider = make_provider(
        account_sid=settings.twilio_account_sid,
        auth_token=auth_token,
        sender=settings.twilio_from,
        api_url=settings.twilio_api_url,
    )
    metrics = SmsMetrics(registry)
    sender = OutboxSender(
        db=db,
        dsn=dsn,
        phi=phi,
        provider=provider,
        metrics=metrics,
        clock=clock,
        status_callback_base=None
        if settings.console_sms
        else settings.public_url + webhooks.STATUS_PATH,
        engine=engine,
    )
    outbox = SmsOutbox(sender)
    bell.connect(outbox)
    hooks = webhooks.add_routes(
        app,
        db=db,
        dsn=dsn,
        public_url=settings.public_url,
        auth_token=auth_token,
        metrics=metrics,
        signatures=signatures,
        engine=engine,
        clock=clock,
        account_sid=settings.twilio_account_sid,
    )
    stack.push_async_callback(hooks.aclose)
    await sender.start()
    stack.push_async_callback(sender.aclose, settings.shutdown_grace_s)
    log.info("sms outbox sender started", extra={"provider": provider.name})
    return outbox
