"""``patient_sms_consents``: the standing SMS consent of a phone, keyed by its keyed hash.

The conversation core decides *when* consent changes (STOP words in any state, YES/START, a carrier
opt-out reported by Twilio); this module only records and reads it.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from radsched.conversation.model import ConsentStatus

__all__ = ["get_consent", "record_consent"]

_STATUS = {"granted": ConsentStatus.GRANTED, "revoked": ConsentStatus.REVOKED}


async def get_consent(conn: asyncpg.Connection, phone_hash: str) -> ConsentStatus:
    """GRANTED, REVOKED, or UNKNOWN (no row, or consent asked but not yet given)."""
    state = await conn.fetchval(
        "SELECT consent_state FROM patient_sms_consents WHERE phone_hash = $1", phone_hash
    )
    return _STATUS.get(state, ConsentStatus.UNKNOWN)


async def record_consent(
    conn: asyncpg.Connection, phone_hash: str, *, granted: bool, source: str, now: datetime
) -> ConsentStatus:
    """Upsert the consent; ``source`` is a keyword constant or event name, never patient text."""
    state = "granted" if granted else "revoked"
    await conn.execute(
        """
        INSERT INTO patient_sms_consents (phone_hash, consent_state, source, updated_at, created_at)
        VALUES ($1, $2, $3, $4, $4)
        ON CONFLICT (phone_hash) DO UPDATE
            SET consent_state = EXCLUDED.consent_state, source = EXCLUDED.source,
                updated_at = EXCLUDED.updated_at
        """,
        phone_hash,
        state,
        source[:40],
        now,
    )
    return _STATUS[state]
