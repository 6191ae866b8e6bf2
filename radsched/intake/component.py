"""Wiring of order intake and the SMS conversation engine into the daemon (one ``start`` call).

Starts after the RIS component (it needs the scheduling service) and before the SMS transport,
whose webhooks call the engine; the engine wakes that transport through an ``OutboxBell``
(radsched/wiring.py). Configuration read here, besides the settings:

- TOML ``[sms.templates.<lang>]`` / ``[sms.procedure_types.<lang>]``: text overrides (docs/sms.md);
- TOML ``[procedure_modalities]``: procedure code → DICOM modality when OBR-24 is empty;
- TOML ``[dialect]``: the RIS dialect's site overrides, which also say where an ORM carries the
  facility, modality and procedure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from prometheus_client import CollectorRegistry

from channels import ConfigError as ChannelConfigError
from channels import Party, get_dialect
from radsched.conversation.config import ConversationConfig
from radsched.conversation.quiet_hours import parse_quiet_hours
from radsched.conversation.templates import TemplateError, TemplateSet
from radsched.errors import ConfigError
from radsched.inbound.router import InboundRouter
from radsched.intake.choice import procedure_modalities
from radsched.intake.hl7 import OrmHandler
from radsched.intake.http import add_order_route
from radsched.intake.service import OrderIntake
from radsched.modality import ModalityControl
from radsched.privacy import PhiBox
from radsched.scheduling.service import SchedulingService
from radsched.settings import Settings, toml_sections
from radsched.sms.after_booking import AfterBooking, Confirmations
from radsched.sms.driver import Driver
from radsched.sms.engine import SmsEngine
from radsched.sms.engine_metrics import EngineMetrics
from radsched.sms.ris_calls import Rescheduler, RisCaller
from radsched.storage.db import Database
from radsched.storage.orders import OrderStore
from radsched.wiring import OutboxBell

log = logging.getLogger("radsched.intake")

__all__ = ["conversation_config", "resume_waiting", "start"]

# Shown in texts when PRACTICE_NAME / SCHEDULING_PHONE are unset (embedded defaults, demos).
FALLBACK_PRACTICE = "Radiology scheduling"
FALLBACK_PHONE = "your clinic"


def conversation_config(settings: Settings, sections: Mapping[str, Any]) -> ConversationConfig:
    sms = sections.get("sms", {}) if isinstance(sections.get("sms"), Mapping) else {}
    try:
        templates = TemplateSet.from_mapping(sms.get("templates"), sms.get("procedure_types"))
    except TemplateError as exc:
        raise ConfigError(f"RADSCHED_CONFIG [sms.templates]: {exc}") from None
    practice = settings.practice_name or FALLBACK_PRACTICE
    phone = settings.scheduling_phone or FALLBACK_PHONE
    if not settings.practice_name or not settings.scheduling_phone:
        log.warning(
            "RADSCHED_PRACTICE_NAME / RADSCHED_SCHEDULING_PHONE unset; texts use placeholders"
        )
    try:
        return ConversationConfig(
            practice_name=practice,
            scheduling_phone=phone,
            templates=templates,
            timezone=ZoneInfo(settings.timezone),
            quiet_hours=parse_quiet_hours(settings.quiet_hours),
            ris_wait_max=timedelta(minutes=settings.ris_wait_max_min),
            waitlist_after=(
                timedelta(days=settings.waitlist_min_days)
                if settings.waitlist_min_days >= 0
                else None
            ),
        )
    except ValueError as exc:
        raise ConfigError(f"RADSCHED_{exc}") from None


async def start(
    stack: AsyncExitStack,
    *,
    settings: Settings,
    order_tokens: tuple[str, ...],
    dsn: str,
    db: Database,
    orders: OrderStore,
    phi: PhiBox,
    hash_key: bytes,
    registry: CollectorRegistry,
    app: web.Application,
    inbound: InboundRouter,
    scheduling: SchedulingService,
    outbox: OutboxBell,
    me: Party,
    tz: ZoneInfo,
    clock: Callable[[], datetime],
    rescheduler: Callable[[], Rescheduler | None] = lambda: None,
    confirmations: Callable[[], Confirmations | None] = lambda: None,
) -> SmsEngine:
    """Build the engine, register ORM^O01 and ``POST /api/orders``, start the timer.

    Conversations a previous process left waiting on the RIS are not resumed here: the composition
    root calls :func:`resume_waiting` once every component (the SIU hook included) is up.
    """
    sections = toml_sections()
    cfg = conversation_config(settings, sections)
    mapping = procedure_modalities(sections.get("procedure_modalities"))
    try:
        dialect = get_dialect(settings.ris_dialect, sections.get("dialect"), local=me, tz=tz)
    except ChannelConfigError as exc:
        raise ConfigError(f"RADSCHED_CONFIG [dialect]: {exc}") from None

    metrics = EngineMetrics(registry)
    modalities = ModalityControl(settings.modality_defaults)
    await modalities.listen(dsn)
    stack.push_async_callback(modalities.aclose)

    driver = Driver(cfg=cfg, phi=phi, orders=orders, metrics=metrics)
    engine = SmsEngine(
        db=db,
        driver=driver,
        ris=RisCaller(lambda: scheduling, clock=clock, rescheduler=rescheduler),
        hash_key=hash_key,
        clock=clock,
        metrics=metrics,
        outbox=outbox.current,
        after_booking=AfterBooking(driver, phi, clock, confirmations=confirmations),
    )
    engine.modalities = modalities
    intake = OrderIntake(
        orders=orders,
        engine=engine,
        modalities=modalities,
        metrics=metrics,
        clock=clock,
    )
    wake = engine.wake_outbox
    orm = OrmHandler(intake, dialect, mapping, wake)
    # The same reader takes the 2.5+ imaging and laboratory order messages (channels.orders).
    for message_type in ("ORM^O01", "OMI^O23", "OML^O21"):
        inbound.register(message_type, orm)
    add_order_route(
        app,
        db=db,
        intake=intake,
        tokens=order_tokens,
        procedure_modalities=mapping,
        wake=wake,
    )
    _add_openapi(app)
    engine.start_timer()
    stack.push_async_callback(engine.aclose, settings.shutdown_grace_s)
    return engine


async def resume_waiting(engine: SmsEngine) -> None:
    """Give conversations a previous process left waiting on the RIS their call again."""
    try:
        await engine.resume_waiting()
    except Exception:
        log.exception("could not resume conversations waiting on the RIS; the busy timeout will")


def _add_openapi(app: web.Application) -> None:
    from radsched.intake.http import openapi_fragment
    from radsched.rest import openapi

    if openapi.DOCUMENT in app:  # the REST facade serves the document
        openapi.add_paths(app, openapi_fragment())
