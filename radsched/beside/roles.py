"""Roles: which parts of radsched one daemon runs (``ROLES``, issue 17), and which settings each needs.

* ``gateway`` — the REST facade (``/api/ris/*``) and the HL7 client to the RIS;
* ``sms`` — order intake (MLLP and ``POST /api/orders``), conversations, the SMS transport;
* ``emr`` — the SIU outbox, its routing and the SIU relay.

Pure: the settings validator calls :func:`check_combination` (a combination that cannot work is refused
with one line naming the setting), and the composition root asks :func:`needs` which secrets and
components to set up. Several daemons with different roles share one database as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ALL_ROLES",
    "BACKENDS",
    "Needs",
    "Role",
    "check_combination",
    "needs",
    "parse_roles",
]

Role = Literal["gateway", "sms", "emr"]
ALL_ROLES: tuple[Role, ...] = ("gateway", "sms", "emr")
BACKENDS = ("hl7", "rest")


def parse_roles(text: str) -> tuple[Role, ...]:
    """``"sms, gateway"`` → ``("gateway", "sms")`` in the canonical order; ValueError names the bad one."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("names no role (use any of gateway,sms,emr)")
    for name in names:
        if name not in ALL_ROLES:
            raise ValueError(f"unknown role {name!r} (known: gateway, sms, emr)")
    return tuple(role for role in ALL_ROLES if role in names)


def check_combination(
    roles: Iterable[Role],
    *,
    backend: str,
    scheduling_url: str | None,
    scheduling_key: bool,
    shadow_url: str | None,
    shadow_key: bool,
) -> str | None:
    """Why these settings cannot work together (one line naming the setting), or None."""
    have = set(roles)
    if backend == "rest":
        if "sms" not in have:
            return (
                "RADSCHED_SCHEDULING_BACKEND: 'rest' is how the sms role reaches the RIS, "
                "and this daemon does not run the sms role"
            )
        if not scheduling_url:
            return "RADSCHED_SCHEDULING_URL: required with RADSCHED_SCHEDULING_BACKEND=rest"
        if not scheduling_key:
            return "RADSCHED_SCHEDULING_API_KEY: required with RADSCHED_SCHEDULING_BACKEND=rest"
    else:
        if scheduling_url:
            return (
                "RADSCHED_SCHEDULING_URL: only used with RADSCHED_SCHEDULING_BACKEND=rest "
                "(it is 'hl7')"
            )
        if "sms" in have and "gateway" not in have:
            return (
                "RADSCHED_ROLES: the sms role without the gateway role needs "
                "RADSCHED_SCHEDULING_BACKEND=rest and RADSCHED_SCHEDULING_URL"
            )
    if shadow_url and "gateway" not in have:
        return "RADSCHED_SHADOW_URL: shadow mode runs in the gateway role, which this daemon does not run"
    if shadow_url and not shadow_key:
        return "RADSCHED_SHADOW_API_KEY: required with RADSCHED_SHADOW_URL"
    return None


@dataclass(frozen=True, slots=True)
class Needs:
    """What a daemon with these roles sets up (and therefore which settings it checks)."""

    ris_client: bool
    """The HL7 client to the RIS (``RIS_ADDR``, or the simulated RIS in-process when unset)."""
    rest_facade: bool
    """``/api/ris/*`` behind ``API_KEYS``."""
    sms: bool
    """Order intake, conversations and the SMS transport: ``PHONE_HASH_KEY``, ``PHI_KEY``, Twilio."""
    emr_outbox: bool
    """The SIU sender and relay: ``EMR_ROUTES``."""
    mllp_listener: bool
    """Inbound HL7: orders (sms) and relayed SIU (emr)."""
    twilio: bool
    """Texts go out: Twilio credentials (or console SMS on embedded defaults)."""


def needs(roles: Iterable[Role], *, backend: str = "hl7") -> Needs:
    have = set(roles)
    gateway, sms, emr = "gateway" in have, "sms" in have, "emr" in have
    return Needs(
        ris_client=gateway or (sms and backend == "hl7"),
        rest_facade=gateway,
        sms=sms,
        emr_outbox=emr,
        mllp_listener=sms or emr,
        twilio=sms,
    )
    # PHONE_HASH_KEY and PHI_KEY stay required for every role: orders are stored under a key derived
    # with PHONE_HASH_KEY (the gateway finds the orders an sms daemon stored by it) and their patient
    # data, like queued SIU, is encrypted with PHI_KEY.
