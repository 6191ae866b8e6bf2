"""Wiring of order intake and the SMS conversation engine into the daemon (one ``start`` call).

Starts after the RIS component (it needs ``daemon.scheduling``) and before the SMS transport,
whose webhooks call ``daemon.sms_engine``. Configuration read here, besides the settings:

- TOML ``[sms.templates.<lang>]`` / ``[sms.procedure_types.<lang>]``: text overrides (docs/sms.md);
- TOML ``[procedure_modalities]``: procedure code → DICOM modality when OBR-24 is empty;
- TOML ``[dialect]``: the RIS dialect's site overrides, which also say where an ORM carries the
  facility, modality and procedure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

from channels import ConfigError as ChannelConfigError
from channels import get_dialect
from radsched.errors import ConfigError
from radsched.intake.choice import procedure_modalities
from radsched.intake.hl7 import OrmHandler
from radsched.intake.http import add_order_route
from radsched.intake.service import OrderIntake
from radsched.modality import ModalityControl
from radsched.settings import Settings, toml_sections
from radsched.sms.config import ConversationConfig
from radsched.sms.driver import Driver
from radsched.sms.engine import SmsEngine, Waker
from radsched.sms.engine_metrics import EngineMetrics
from radsched.sms.quiet_hours import parse_quiet_hours
from radsched.sms.ris_calls import RisCaller
from radsched.sms.templates import TemplateError, TemplateSet

if TYPE_CHECKING:
    from radsched.daemon import Daemon
    from radsched.ris.service import SchedulingService

log = logging.getLogger("radsched.intake")

__all__ = ["conversation_config", "start"]

# Shown in texts when PRACTICE_NAME / SCHEDULING_PHONE are unset (embedded defaults, demos).
FALLBACK_PRACTICE = "Radiology scheduling"
FALLBACK_PHONE = "your clinic"


def conversation_config(settings: Settings, sections: Mapping[str, Any]) -> ConversationConfig:
    from zoneinfo import ZoneInfo

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
        )
    except ValueError as exc:
        raise ConfigError(f"RADSCHED_{exc}") from None


async def start(daemon: Daemon, stack: AsyncExitStack) -> SmsEngine:
    """Build the engine, register ORM^O01 and ``POST /api/orders``, start the timer."""
    settings = daemon.settings
    sections = toml_sections()
    cfg = conversation_config(settings, sections)
    mapping = procedure_modalities(sections.get("procedure_modalities"))
    try:
        dialect = get_dialect(
            settings.ris_dialect, sections.get("dialect"), local=daemon.me, tz=daemon.tz
        )
    except ChannelConfigError as exc:
        raise ConfigError(f"RADSCHED_CONFIG [dialect]: {exc}") from None

    metrics = EngineMetrics(daemon.metrics.registry)
    modalities = ModalityControl(settings.modality_defaults)
    await modalities.listen(daemon.dsn)
    stack.push_async_callback(modalities.aclose)

    def scheduling() -> SchedulingService | None:
        return cast("SchedulingService | None", getattr(daemon, "scheduling", None))

    def outbox() -> Waker | None:
        return cast("Waker | None", getattr(daemon, "sms_outbox", None))

    driver = Driver(cfg=cfg, phi=daemon.phi, orders=daemon.orders, metrics=metrics)
    engine = SmsEngine(
        db=daemon.db,
        driver=driver,
        ris=RisCaller(scheduling, clock=daemon.clock),
        hash_key=daemon.hash_key,
        clock=daemon.clock,
        metrics=metrics,
        outbox=outbox,
    )
    engine.modalities = modalities
    intake = OrderIntake(
        orders=daemon.orders,
        engine=engine,
        modalities=modalities,
        metrics=metrics,
        clock=daemon.clock,
    )
    wake = engine.wake_outbox
    orm = OrmHandler(intake, dialect, mapping, wake)
    # The same reader takes the 2.5+ imaging and laboratory order messages (channels.orders).
    for message_type in ("ORM^O01", "OMI^O23", "OML^O21"):
        daemon.inbound.register(message_type, orm)
    add_order_route(
        daemon.app,
        db=daemon.db,
        intake=intake,
        tokens=daemon.secrets.order_tokens,
        procedure_modalities=mapping,
        wake=wake,
    )
    _add_openapi(daemon)
    engine.start_timer()
    stack.push_async_callback(engine.aclose, settings.shutdown_grace_s)
    # Conversations a previous process left waiting on the RIS get their call again once every
    # component is up (the booking resolver and the SIU hook included).
    resume = asyncio.create_task(_resume_after_start(daemon, engine), name="sms-resume")
    stack.callback(resume.cancel)
    daemon.sms_engine = engine
    return engine


async def _resume_after_start(daemon: Daemon, engine: SmsEngine) -> None:
    await daemon.started.wait()
    try:
        await engine.resume_waiting()
    except Exception:
        log.exception("could not resume conversations waiting on the RIS; the busy timeout will")


def _add_openapi(daemon: Daemon) -> None:
    from radsched.intake.http import openapi_fragment
    from radsched.ris import openapi

    if openapi.DOCUMENT in daemon.app:  # the REST facade serves the document
        openapi.add_paths(daemon.app, openapi_fragment())
