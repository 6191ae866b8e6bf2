"""The console session cookie: AES-GCM sealed JSON, with idle and absolute timeouts on an injected clock.

The cookie carries the session id, the CSRF token and two times (issued, last activity). It is
encrypted and authenticated, so a visitor can neither read nor alter it; the server still keeps a row
per session (``console_sessions``) so logout and disabling a user end it at once on every daemon.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COOKIE_NAME = "radsched_console"
IDLE_TIMEOUT_S = 30 * 60  # NIST SP 800-63B AAL2: re-authenticate after 30 minutes of inactivity
ABSOLUTE_TIMEOUT_S = 12 * 3600  # … and at least every 12 hours
_AAD = b"radsched-console-session-v1"


def derive_cookie_key(secret: str) -> bytes:
    """A cookie key derived from a daemon secret (PHI_KEY): no new secret for operators to manage;
    rotating that secret logs everyone out, which is what a key rotation should do."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_AAD)
    return hkdf.derive(secret.encode())


@dataclass(frozen=True, slots=True)
class SessionState:
    session_id: str
    """Empty for a visitor who has not logged in (the cookie then only carries the CSRF token)."""
    csrf: str
    issued: float
    last_seen: float

    @classmethod
    def anonymous(cls, now: datetime) -> SessionState:
        stamp = now.timestamp()
        return cls("", secrets.token_urlsafe(24), stamp, stamp)

    @classmethod
    def logged_in(cls, now: datetime) -> SessionState:
        # A fresh id and CSRF token at login: a token seen before login is worthless after it.
        stamp = now.timestamp()
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), stamp, stamp)

    def expiry(self, now: datetime) -> str | None:
        """Why this session is over at ``now`` (``"idle"``/``"absolute"``), or None."""
        stamp = now.timestamp()
        if stamp - self.issued > ABSOLUTE_TIMEOUT_S:
            return "absolute"
        if stamp - self.last_seen > IDLE_TIMEOUT_S:
            return "idle"
        return None

    def seen(self, now: datetime) -> SessionState:
        return replace(self, last_seen=now.timestamp())


class CookieCodec:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encode(self, state: SessionState) -> str:
        nonce = secrets.token_bytes(12)
        body = json.dumps(
            {"s": state.session_id, "c": state.csrf, "i": state.issued, "l": state.last_seen},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, body, _AAD)).decode()

    def decode(self, text: str) -> SessionState | None:
        """None for anything not sealed by us (tampered, old key, garbage)."""
        try:
            raw = base64.urlsafe_b64decode(text.encode())
            if len(raw) < 12 + 16:
                return None
            data = json.loads(self._aead.decrypt(raw[:12], raw[12:], _AAD))
            return SessionState(str(data["s"]), str(data["c"]), float(data["i"]), float(data["l"]))
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None
