"""``webhook_signatures``: the X-Twilio-Signature values the webhooks have acted on, as SHA-256.

A signature that verifies is only ever valid for one request's content, yet the content can be
re-split (Twilio signs names and values concatenated without separators), so the webhooks claim
the signature as well as the MessageSid: a second request with the same signature is a replay,
whatever its fields say. The signature itself is never stored, only its SHA-256.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import asyncpg

__all__ = ["PRUNE", "WebhookSignatures", "digest"]

# For radsched/retention.py: $1 is now, $2 how long a row is kept.
PRUNE = "DELETE FROM webhook_signatures WHERE received_at < $1::timestamptz - $2::interval"


def digest(signature: str) -> bytes:
    # A verified signature is base64 (ASCII); surrogates from non-UTF-8 header bytes cannot reach
    # here, but encoding them must not raise either.
    return hashlib.sha256(signature.encode("utf-8", "surrogateescape")).digest()


class WebhookSignatures:
    """Claims and releases signatures on a connection the caller owns (a webhook's own session)."""

    async def claim(self, conn: asyncpg.Connection, signature: str, now: datetime) -> bool:
        """True when this signature was not seen before (and is now recorded as seen)."""
        new = await conn.fetchval(
            """
            INSERT INTO webhook_signatures (signature_sha256, received_at) VALUES ($1, $2)
            ON CONFLICT (signature_sha256) DO NOTHING
            RETURNING true
            """,
            digest(signature),
            now,
        )
        return bool(new)

    async def release(self, conn: asyncpg.Connection, signature: str) -> None:
        """Forget a claim whose request was not processed, so that Twilio's retry of it is."""
        await conn.execute(
            "DELETE FROM webhook_signatures WHERE signature_sha256 = $1", digest(signature)
        )
