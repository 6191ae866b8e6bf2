"""Which modalities are offered by text: ``scheduling_config`` rows, ``ENABLED_MODALITIES`` as fallback.

Operators switch a modality with ``radsched modality enable|disable CODE --by NAME`` while the daemon
runs. The command writes the row and a ``config_audit`` entry (who, when, why, old -> new) in one
transaction and notifies ``radsched_config`` (a trigger from ``sql/0004`` does the same for any
other writer). Each daemon keeps the enabled set in memory:

- a dedicated connection LISTENs on ``radsched_config`` and marks the cache stale at once;
- the cache is also stale after :data:`CACHE_TTL_S`, so a lost LISTEN connection delays a
  change by seconds at worst, never forever;
- a stale cache is reloaded lazily, with the caller's connection, on the next order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from radsched.storage import scheduling_config
from radsched.storage.listen import Listening, listen
from radsched.storage.pg import Connection, PostgresError

log = logging.getLogger("radsched.modality")

CHANNEL = "radsched_config"
CACHE_TTL_S = 5.0

# DICOM PS3.3 C.7.3.1.1.1 defined terms (current and the retired ones RIS still send). An order whose
# modality is not one of these is refused (AE): it is a mapping error at the sender, not a switch.
DICOM_MODALITIES = frozenset(
    [
        "AR",
        "AS",
        "ASMT",
        "AU",
        "BDUS",
        "BI",
        "BMD",
        "CD",
        "CF",
        "CP",
        "CR",
        "CS",
        "CT",
        "DD",
        "DF",
        "DG",
        "DM",
        "DOC",
        "DS",
        "DX",
        "EC",
        "ECG",
        "EPS",
        "ES",
        "FA",
        "FID",
        "FS",
        "GM",
        "HC",
        "HD",
        "IO",
        "IOL",
        "IVOCT",
        "IVUS",
        "KER",
        "KO",
        "LEN",
        "LP",
        "LS",
        "MA",
        "MG",
        "MR",
        "MS",
        "NM",
        "OAM",
        "OCT",
        "OP",
        "OPM",
        "OPR",
        "OPT",
        "OPTBSV",
        "OPTENF",
        "OPV",
        "OSS",
        "OT",
        "PA",
        "PLAN",
        "POS",
        "PR",
        "PT",
        "PX",
        "REG",
        "RESP",
        "RF",
        "RG",
        "RTDOSE",
        "RTIMAGE",
        "RTINTENT",
        "RTPLAN",
        "RTRAD",
        "RTRECORD",
        "RTSEGANN",
        "RTSTRUCT",
        "RWV",
        "SEG",
        "SM",
        "SMR",
        "SR",
        "SRF",
        "ST",
        "STAIN",
        "TEXTUREMAP",
        "TG",
        "US",
        "VA",
        "VF",
        "XA",
        "XAPLAN",
        "XC",
    ]
)


def is_dicom_modality(code: str) -> bool:
    return code in DICOM_MODALITIES


class UnknownModality(ValueError):
    """Not a DICOM modality code (the message names the code, which is not PHI)."""


def check_code(code: str) -> str:
    normalised = code.strip().upper()
    if normalised not in DICOM_MODALITIES:
        raise UnknownModality(f"{code!r} is not a DICOM modality code (e.g. CR, DX, CT, MR, US)")
    return normalised


@dataclass(frozen=True, slots=True)
class ModalitySetting:
    modality: str
    enabled: bool
    source: str
    """``"config"`` (a scheduling_config row) or ``"default"`` (ENABLED_MODALITIES)."""
    updated_at: datetime | None = None
    updated_by: str | None = None


async def list_modalities(conn: Connection, defaults: Iterable[str]) -> list[ModalitySetting]:
    """Every modality with a row, plus the defaults without one, sorted by code."""
    rows = await scheduling_config.read_all(conn)
    found = {
        r["modality"]: ModalitySetting(
            r["modality"], r["enabled"], "config", r["updated_at"], r["updated_by"]
        )
        for r in rows
    }
    for code in defaults:
        found.setdefault(code, ModalitySetting(code, True, "default"))
    return [found[code] for code in sorted(found)]


async def set_modality(
    conn: Connection,
    code: str,
    *,
    enabled: bool,
    by: str,
    note: str | None,
    defaults: Iterable[str],
    now: datetime,
) -> tuple[bool, bool]:
    """Switch ``code``; write the audit row and notify the daemons. Returns (old, new) enabled.

    Run it inside a transaction: the row, its audit entry and the notification commit together.
    A no-op change is still audited (an operator asserting the state is worth a line).
    """
    code = check_code(code)
    if not by.strip():
        raise ValueError("--by must name the person making the change")
    current = await scheduling_config.read_locked(conn, code)
    old = bool(current) if current is not None else code in set(defaults)
    await scheduling_config.write(
        conn,
        code,
        enabled=enabled,
        by=by.strip(),
        now=now,
        old_value=_word(old) if current is not None else f"{_word(old)} (default)",
        new_value=_word(enabled),
        note=note,
        channel=CHANNEL,
    )
    return old, enabled


def _word(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"


class ModalityControl:
    """The daemon's view of the switches: an in-memory set, refreshed on NOTIFY or after a TTL."""

    def __init__(self, defaults: Iterable[str], *, ttl_s: float = CACHE_TTL_S) -> None:
        self._defaults = frozenset(defaults)
        self._ttl = ttl_s
        self._enabled: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._listener: Listening | None = None
        self.notified = asyncio.Event()
        """Set on every notification (tests and operators' tooling wait on it; clear it first)."""

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def enabled(self, conn: Connection, code: str) -> bool:
        if time.monotonic() - self._loaded_at > self._ttl:
            await self.reload(conn)
        return code in self._enabled

    async def reload(self, conn: Connection) -> None:
        stamp = time.monotonic()  # taken first: a NOTIFY during the query marks it stale again
        settings = await list_modalities(conn, self._defaults)
        self._enabled = frozenset(s.modality for s in settings if s.enabled)
        self._loaded_at = stamp

    async def listen(self, dsn: str) -> None:
        """Open the dedicated LISTEN connection. Failure is logged, not fatal: the TTL still works."""
        try:
            self._listener = await listen(
                dsn, CHANNEL, self._on_notify, name="radsched-listen", on_lost=self._on_lost
            )
        except (OSError, PostgresError) as exc:
            log.warning(
                "modality LISTEN unavailable; changes apply within the cache time",
                extra={"error": type(exc).__name__, "ttl_s": self._ttl},
            )

    def _on_notify(self, payload: str) -> None:
        log.info("configuration changed", extra={"item": payload})
        self.invalidate()
        self.notified.set()

    def _on_lost(self) -> None:
        log.warning("modality LISTEN connection lost; relying on the cache time")
        self._listener = None

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.aclose()
