"""Privacy primitives: phone normalisation, keyed phone hash, sealed PHI, confirmation codes.

Pure functions and one small class, no I/O. The daemon stores phones only as ``phone_hash``
(DESIGN.md section 9) and keeps the few PHI fields a live conversation needs (number to text
back, MRN, order id) sealed with :class:`PhiBox` until the conversation ends.

Key format (``PHONE_HASH_KEY`` and ``PHI_KEY``)
-----------------------------------------------
A key is 32 random bytes written as text, in one of these forms::

    base64:<44 chars of standard or URL-safe base64, padding optional>
    hex:<64 hex digits>
    <64 hex digits>                      (bare hex)
    <base64 that decodes to 32 bytes>    (bare base64)

``PHI_KEY`` may list several keys for rotation, comma-separated, each optionally prefixed by
a key id ``1..255`` and a colon: ``"2:base64:AAAA…,1:hex:00ff…"``. The **first** entry seals
new data; the others only open old blobs. Without an id, entries are numbered from 1 in the
order given, so the single-key form needs no id at all.

Passphrases are refused on purpose: a low-entropy secret would make the keyed phone hash
brute-forceable again (reference/sms.md, trap 3), which is the whole point of keying it.
:func:`generate_key_text` produces a fresh key in the canonical form.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CONFIRMATION_ALPHABET",
    "KEY_BYTES",
    "KeyFormatError",
    "LineType",
    "PhiBox",
    "PhiBoxError",
    "confirmation_code",
    "generate_key_text",
    "line_type",
    "may_receive_sms",
    "normalise_phone",
    "parse_key",
    "parse_keyring",
    "phone_hash",
]

KEY_BYTES = 32

# A webhook or PID-13 value longer than this is not a phone number; refusing early keeps the
# phonenumbers parser (which has its own 250-char cap) from seeing hostile input at all.
_MAX_RAW_PHONE = 64
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


# --- phone numbers -------------------------------------------------------------------------


def normalise_phone(raw: str, default_region: str = "US") -> str | None:
    """Return ``raw`` as an E.164 string (``+12125550123``), or None when it is not a valid number.

    Numbers without a country code are read in ``default_region``. "Valid" is phonenumbers'
    metadata check (right length and prefix for the region), so ``555-0123`` alone is None:
    texting a guess is worse than handing the order to staff.
    """
    if not raw or len(raw) > _MAX_RAW_PHONE:
        return None
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    e164: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164


class LineType(enum.StrEnum):
    """What the numbering plan says about a number. US/CA numbers are almost always
    FIXED_LINE_OR_MOBILE: the plan cannot tell, only a carrier lookup (Twilio Lookup) can."""

    MOBILE = "mobile"
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"
    FIXED_LINE = "fixed_line"
    VOIP = "voip"
    OTHER = "other"  # toll-free, premium, pager, shared cost, …
    UNKNOWN = "unknown"


_LINE_TYPES = {
    phonenumbers.PhoneNumberType.MOBILE: LineType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: LineType.FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE: LineType.FIXED_LINE,
    phonenumbers.PhoneNumberType.VOIP: LineType.VOIP,
    phonenumbers.PhoneNumberType.UNKNOWN: LineType.UNKNOWN,
}


def line_type(e164: str) -> LineType:
    """The line type of an E.164 number according to the offline metadata."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return LineType.UNKNOWN
    return _LINE_TYPES.get(phonenumbers.number_type(parsed), LineType.OTHER)


def may_receive_sms(e164: str) -> bool:
    """False only when the metadata is sure the number cannot take a text (a known landline).

    Unknown and ambiguous types pass: Twilio's error 30006 (landline) is the definitive answer,
    and refusing every US number (all FIXED_LINE_OR_MOBILE) would disable the feature.
    """
    return line_type(e164) not in (LineType.FIXED_LINE, LineType.OTHER)


def phone_hash(key: bytes, e164: str) -> str:
    """Hex HMAC-SHA256 of an E.164 number under ``key`` (DESIGN.md section 9).

    Refuses anything that is not already E.164: hashing ``(212) 555-0123`` and ``+12125550123`` to
    different values would silently split one patient's consent history in two.
    """
    _check_key(key, "phone hash key")
    if not _E164.fullmatch(e164):
        raise ValueError("phone_hash needs an E.164 number; call normalise_phone first")
    return hmac.new(key, e164.encode("ascii"), hashlib.sha256).hexdigest()


# --- keys ----------------------------------------------------------------------------------


class KeyFormatError(ValueError):
    """A configured key is malformed. The message names the setting, never the key material."""


def generate_key_text() -> str:
    """A fresh random key in the canonical ``base64:`` form."""
    return "base64:" + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key(text: str, *, setting: str = "key") -> bytes:
    """Decode one key written in any of the forms in the module docstring to its 32 bytes."""
    value = text.strip()
    try:
        if value.startswith("hex:"):
            raw = bytes.fromhex(value[4:])
        elif value.startswith("base64:"):
            raw = _b64decode(value[7:])
        elif re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raw = bytes.fromhex(value)
        else:
            raw = _b64decode(value)
    except (ValueError, binascii.Error):
        raise KeyFormatError(f"{setting}: not valid hex or base64 (see docs/sms.md)") from None
    if len(raw) != KEY_BYTES:
        raise KeyFormatError(
            f"{setting}: must decode to {KEY_BYTES} bytes, got {len(raw)}; "
            "generate one with `radsched` or `openssl rand -base64 32`"
        )
    return raw


def parse_keyring(text: str, *, setting: str = "PHI_KEY") -> tuple[int, dict[int, bytes]]:
    """Parse a rotation list ``[id:]key[,[id:]key…]``; return (current key id, {id: key})."""
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if not entries:
        raise KeyFormatError(f"{setting}: empty")
    keys: dict[int, bytes] = {}
    current = 0
    for position, entry in enumerate(entries, start=1):
        head, sep, rest = entry.partition(":")
        if sep and head.isdigit():
            key_id, key_text = int(head), rest
        else:
            key_id, key_text = position, entry
        if not 1 <= key_id <= 255:
            raise KeyFormatError(f"{setting}: key id must be 1..255, got {key_id}")
        if key_id in keys:
            raise KeyFormatError(f"{setting}: key id {key_id} appears twice")
        keys[key_id] = parse_key(key_text, setting=f"{setting} entry {position}")
        current = current or key_id
    return current, keys


def _b64decode(text: str) -> bytes:
    # Accept both alphabets and missing padding: keys get pasted from many tools.
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def _check_key(key: bytes, what: str) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes")


# --- sealed PHI ----------------------------------------------------------------------------


class PhiBoxError(ValueError):
    """A blob could not be opened: tampered, wrong AAD, unknown key id or not a PhiBox blob."""


_FORMAT_V1 = 1
_NONCE_BYTES = 12
_HEADER_BYTES = 2  # format version, key id


class PhiBox:
    """AES-256-GCM sealing of small JSON objects (the PHI a live conversation needs).

    Blob layout: ``format(1) | key_id(1) | nonce(12) | ciphertext+tag``. The two header bytes are
    authenticated together with the caller's ``aad``, so a blob cannot be replayed under another
    key id, and ``aad`` should name the row it belongs to (e.g. ``b"conversation:<id>"``) so a blob
    copied onto another row does not open. Nonces are random: with 96 bits and the volumes of one
    practice, the birthday bound is nowhere near.
    """

    __slots__ = ("_ciphers", "_current")

    def __init__(
        self, key: bytes, *, key_id: int = 1, old_keys: Mapping[int, bytes] | None = None
    ) -> None:
        _check_key(key, "PHI key")
        if not 1 <= key_id <= 255:
            raise ValueError("key_id must be 1..255")
        keys = dict(old_keys or {})
        keys[key_id] = key
        for other in keys.values():
            _check_key(other, "PHI key")
        self._current = key_id
        self._ciphers = {kid: AESGCM(k) for kid, k in keys.items()}

    @classmethod
    def from_secret(cls, text: str, *, setting: str = "PHI_KEY") -> PhiBox:
        """Build from the configured text (see the module docstring for the format)."""
        current, keys = parse_keyring(text, setting=setting)
        return cls(keys.pop(current), key_id=current, old_keys=keys)

    @property
    def key_id(self) -> int:
        """The id new blobs are sealed with."""
        return self._current

    def seal(self, obj: Mapping[str, Any], *, aad: bytes) -> bytes:
        """Encrypt ``obj`` (JSON-serialisable) under the current key."""
        header = bytes((_FORMAT_V1, self._current))
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plaintext = json.dumps(dict(obj), separators=(",", ":"), ensure_ascii=False).encode()
        sealed = self._ciphers[self._current].encrypt(nonce, plaintext, header + aad)
        return header + nonce + sealed

    def open(self, blob: bytes, *, aad: bytes) -> dict[str, Any]:
        """Decrypt a blob from :meth:`seal`; raise :class:`PhiBoxError` on any mismatch."""
        if len(blob) < _HEADER_BYTES + _NONCE_BYTES + 16 or blob[0] != _FORMAT_V1:
            raise PhiBoxError("not a PhiBox blob")
        cipher = self._ciphers.get(blob[1])
        if cipher is None:
            raise PhiBoxError(f"unknown key id {blob[1]}")
        header, nonce = blob[:_HEADER_BYTES], blob[_HEADER_BYTES : _HEADER_BYTES + _NONCE_BYTES]
        try:
            plaintext = cipher.decrypt(nonce, blob[_HEADER_BYTES + _NONCE_BYTES :], header + aad)
        except InvalidTag:
            raise PhiBoxError("blob failed authentication (tampered or wrong aad)") from None
        obj = json.loads(plaintext)
        if not isinstance(obj, dict):
            raise PhiBoxError("sealed payload is not an object")
        return obj

    def needs_rekey(self, blob: bytes) -> bool:
        """True when ``blob`` was sealed under an older key and should be re-sealed."""
        return len(blob) >= _HEADER_BYTES and blob[1] != self._current


# --- confirmation codes --------------------------------------------------------------------

# No 0/O, 1/I/L: codes are read aloud over the phone and typed from a lock screen.
CONFIRMATION_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def confirmation_code(length: int = 6) -> str:
    """A random code from :data:`CONFIRMATION_ALPHABET` (31^6 ≈ 8.9e8 values for 6 chars)."""
    if not 4 <= length <= 12:
        raise ValueError("confirmation code length must be 4..12")
    return "".join(secrets.choice(CONFIRMATION_ALPHABET) for _ in range(length))
