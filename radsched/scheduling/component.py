"""The RIS gateway component: dialect, RIS connection (or the in-process simulated RIS), scheduling
service and readiness check. Started first among the components; the REST facade and the OpenAPI
document live in radsched/rest.

Site configuration beyond the public settings lives in the ``RADSCHED_CONFIG`` TOML file:

* ``[dialect]`` — field placements and format switches of the RIS dialect (``channels`` overrides);
* ``[ris]`` — ``application`` / ``facility`` (MSH-5/6 we address the RIS as), ``tls`` (true: TLS with the
  system trust store), ``tls_ca`` (CA file instead), ``tls_cert`` + ``tls_key`` (client certificate for
  mutual TLS), ``tls_server_name`` (name to verify when it differs from the host), ``connect_timeout_s``,
  ``slot_cache_s`` (keep slot lists that long; 0 = off, the default — see docs/integration.md),
  ``slot_memo`` (how many recent slot answers to keep read; 0 = read every answer in full).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from channels import ConfigError as DialectConfigError
from channels import Party, get_dialect
from channels.dialects.slotmemo import DEFAULT_SIZE as SLOT_MEMO_SIZE
from channels.dialects.slotmemo import SlotMemo
from radsched.errors import ConfigError
from radsched.hl7metrics import HL7Metrics
from radsched.rest.health import Readiness
from radsched.scheduling.client import RisClient
from radsched.scheduling.control_ids import ControlIds
from radsched.scheduling.service import SchedulingService
from radsched.settings import HostPort, Settings, toml_sections
from radsched.storage.db import Database
from radsched.storage.orders import OrderStore

log = logging.getLogger("radsched.ris")

_RIS_KEYS = {
    "application",
    "facility",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_server_name",
    "connect_timeout_s",
    "slot_cache_s",
    "slot_memo",
}


@dataclass(frozen=True, slots=True)
class RisPeer:
    """The ``[ris]`` table, checked."""

    party: Party
    ssl: ssl.SSLContext | None
    server_name: str | None
    connect_timeout: float
    slot_cache_s: float = 0.0
    slot_memo: int = SLOT_MEMO_SIZE


def ris_tls_settings(settings: Settings) -> dict[str, Any]:
    """``RIS_TLS_*`` as ``[ris]`` keys: the environment wins over the file (systemd units and
    containers set TLS paths there), unset ones leave the file's value alone."""
    given = {
        "tls": settings.ris_tls or None,
        "tls_ca": settings.ris_tls_ca,
        "tls_cert": settings.ris_tls_cert,
        "tls_key": settings.ris_tls_key,
        "tls_server_name": settings.ris_tls_server_name or None,
    }
    return {key: value for key, value in given.items() if value is not None}


def ris_peer(table: dict[str, Any]) -> RisPeer:
    unknown = set(table) - _RIS_KEYS
    if unknown:
        raise ConfigError(
            f"RADSCHED_CONFIG [ris]: unknown key {sorted(unknown)[0]!r} "
            f"(known: {', '.join(sorted(_RIS_KEYS))})"
        )
    party = Party(str(table.get("application", "RIS")), str(table.get("facility", "RIS")))
    ca, cert, key = table.get("tls_ca"), table.get("tls_cert"), table.get("tls_key")
    context: ssl.SSLContext | None = None
    if table.get("tls") or ca or cert:
        try:
            context = ssl.create_default_context(cafile=str(ca) if ca else None)
        except (OSError, ssl.SSLError):
            raise ConfigError(
                f"RADSCHED_CONFIG [ris] tls_ca / RADSCHED_RIS_TLS_CA: cannot load {ca}"
            ) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert or key:
            if not (cert and key):
                raise ConfigError(
                    "RADSCHED_CONFIG [ris] / RADSCHED_RIS_TLS_*: tls_cert and tls_key go together"
                )
            try:
                context.load_cert_chain(Path(str(cert)), Path(str(key)))
            except (OSError, ssl.SSLError):
                raise ConfigError(
                    "RADSCHED_CONFIG [ris] tls_cert/tls_key (RADSCHED_RIS_TLS_CERT/_KEY): "
                    "cannot load the client certificate"
                ) from None
    try:
        timeout = float(table.get("connect_timeout_s", 5.0))
        slot_cache_s = float(table.get("slot_cache_s", 0.0))
    except (TypeError, ValueError):
        raise ConfigError(
            "RADSCHED_CONFIG [ris]: connect_timeout_s and slot_cache_s must be numbers"
        ) from None
    if not (0 < timeout <= 60 and 0 <= slot_cache_s <= 60):
        raise ConfigError(
            "RADSCHED_CONFIG [ris]: connect_timeout_s must be in (0, 60], slot_cache_s in [0, 60]"
        )
    memo = table.get("slot_memo", SLOT_MEMO_SIZE)
    if type(memo) is not int or not 0 <= memo <= 4096:
        raise ConfigError("RADSCHED_CONFIG [ris]: slot_memo must be a whole number in [0, 4096]")
    server_name = table.get("tls_server_name")
    return RisPeer(
        party, context, str(server_name) if server_name else None, timeout, slot_cache_s, memo
    )


@dataclass(frozen=True, slots=True)
class RisGateway:
    """What the RIS component hands the composition root."""

    service: SchedulingService
    # The in-process simulated RIS, when RIS_ADDR is unset.
    simulated_ris: HostPort | None
    # Taken when the component started: the booking resolver looks at bookings older than this.
    started_at: datetime


async def _simulated_ris(
    settings: Settings,
    tz: ZoneInfo,
    clock: Callable[[], datetime],
    stack: AsyncExitStack,
    overrides: dict[str, Any],
) -> HostPort:
    from radsched.simris import SimRis, default_calendar

    sim = SimRis(
        default_calendar(tz=tz, clock=clock),
        overrides={settings.ris_dialect: overrides},
    )
    await sim.start("127.0.0.1", 0)
    stack.push_async_callback(sim.aclose)
    addr = HostPort("127.0.0.1", sim.port)
    log.info("RIS_ADDR is unset: using the simulated RIS in-process", extra={"ris": str(addr)})
    return addr


async def start(
    stack: AsyncExitStack,
    *,
    settings: Settings,
    db: Database,
    orders: OrderStore,
    readiness: Readiness,
    hl7_metrics: HL7Metrics,
    me: Party,
    tz: ZoneInfo,
    clock: Callable[[], datetime],
) -> RisGateway:
    """Connect to the RIS (or start the simulated one) and build the scheduling service.

    Its REST facade (radsched/rest/scheduling.py) is added by the composition root.

    The booking resolver is not started here: the composition root starts it (``run_resolver``)
    once every booking hook is registered, so no booking is marked booked without its SIU.
    """
    sections = toml_sections()
    overrides = dict(sections.get("dialect", {}))
    peer = ris_peer({**sections.get("ris", {}), **ris_tls_settings(settings)})
    ids = ControlIds()
    try:
        dialect = get_dialect(
            settings.ris_dialect,
            overrides,
            local=me,
            remote=peer.party,
            tz=tz,
            clock=clock,
            control_ids=ids,
            slot_memo=SlotMemo(peer.slot_memo, on_read=hl7_metrics.slot_answer_read),
        )
    except DialectConfigError as exc:
        raise ConfigError(f"RADSCHED_CONFIG [dialect]: {exc}") from None
    simulated = None
    if settings.ris_hostport is None:
        simulated = await _simulated_ris(settings, tz, clock, stack, overrides)
    addr = settings.ris_hostport or simulated
    assert addr is not None
    client = RisClient(
        addr.host,
        addr.port,
        timeout=settings.ris_timeout_s,
        metrics=hl7_metrics,
        ssl_context=peer.ssl,
        server_hostname=peer.server_name,
        connect_timeout=peer.connect_timeout,
    )
    stack.push_async_callback(client.aclose)
    service = SchedulingService(
        db=db,
        orders=orders,
        ris=client,
        dialect=dialect,
        control_ids=ids,
        tz=tz,
        clock=clock,
        location_cache_s=settings.location_cache_s,
        slot_cache_s=peer.slot_cache_s,
    )
    stack.push_async_callback(service.aclose)
    readiness.add("ris", client.ready)
    log.info(
        "RIS gateway ready",
        extra={"ris": str(addr), "dialect": dialect.name, "timeout_s": settings.ris_timeout_s},
    )
    return RisGateway(service, simulated, clock())
