"""radsched.privacy: phone normalisation, keyed hash, PhiBox, keys, confirmation codes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radsched.privacy import (
    CONFIRMATION_ALPHABET,
    KeyFormatError,
    LineType,
    PhiBox,
    PhiBoxError,
    confirmation_code,
    generate_key_text,
    line_type,
    may_receive_sms,
    normalise_phone,
    parse_key,
    parse_keyring,
    phone_hash,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


@pytest.mark.parametrize(
    "raw",
    ["(212) 555-0123", "212.555.0123", "+1 212 555 0123", "1-212-555-0123", " 2125550123 "],
)
def test_us_numbers_normalise_to_e164(raw: str) -> None:
    assert normalise_phone(raw) == "+12125550123"


def test_other_regions_and_default_region() -> None:
    assert normalise_phone("020 7946 0000", "GB") == "+442079460000"
    assert normalise_phone("+44 20 7946 0000") == "+442079460000"


@pytest.mark.parametrize("raw", ["", "555-0123", "abc", "+1 000 000 0000", "1" * 80, "+"])
def test_unusable_numbers_are_none(raw: str) -> None:
    assert normalise_phone(raw) is None


@given(st.text(max_size=100))
def test_normalise_never_raises(raw: str) -> None:
    result = normalise_phone(raw)
    assert result is None or result.startswith("+")


def test_line_type_where_the_metadata_knows() -> None:
    assert line_type("+12125550123") is LineType.FIXED_LINE_OR_MOBILE
    assert line_type("+447700900123") in (LineType.MOBILE, LineType.UNKNOWN)
    assert line_type("+442079460000") is LineType.FIXED_LINE
    assert not may_receive_sms("+442079460000")  # a UK landline
    assert may_receive_sms("+12125550123")  # US: cannot tell, so Twilio decides
    assert line_type("garbage") is LineType.UNKNOWN


def test_phone_hash_is_keyed_hex_hmac() -> None:
    a = phone_hash(KEY_A, "+12125550123")
    assert len(a) == 64 and int(a, 16) >= 0
    assert a == phone_hash(KEY_A, "+12125550123")
    assert a != phone_hash(KEY_B, "+12125550123")
    assert a != phone_hash(KEY_A, "+12125550124")


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_different_keys_give_different_hashes(k1: bytes, k2: bytes) -> None:
    if k1 != k2:
        assert phone_hash(k1, "+12125550123") != phone_hash(k2, "+12125550123")


def test_phone_hash_refuses_unnormalised_numbers_and_short_keys() -> None:
    with pytest.raises(ValueError, match="E.164"):
        phone_hash(KEY_A, "(212) 555-0123")
    with pytest.raises(ValueError):
        phone_hash(b"short", "+12125550123")


def test_phi_box_round_trip() -> None:
    box = PhiBox(KEY_A)
    obj = {"phone": "+12125550123", "mrn": "MRN-1", "order_id": "ORD9", "n": 3, "ñ": "é"}
    blob = box.seal(obj, aad=b"conversation:c1")
    assert box.open(blob, aad=b"conversation:c1") == obj
    assert b"+12125550123" not in blob
    assert box.seal(obj, aad=b"x") != box.seal(obj, aad=b"x")  # random nonce


def test_phi_box_rejects_wrong_aad_tampering_and_wrong_key() -> None:
    box = PhiBox(KEY_A)
    blob = box.seal({"mrn": "1"}, aad=b"conversation:c1")
    with pytest.raises(PhiBoxError):
        box.open(blob, aad=b"conversation:c2")
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(PhiBoxError):
            box.open(bytes(tampered), aad=b"conversation:c1")
    with pytest.raises(PhiBoxError):
        PhiBox(KEY_B).open(blob, aad=b"conversation:c1")
    with pytest.raises(PhiBoxError):
        box.open(blob[:10], aad=b"conversation:c1")


def test_phi_box_rotation() -> None:
    old = PhiBox(KEY_A, key_id=1)
    blob = old.seal({"mrn": "1"}, aad=b"a")
    new = PhiBox(KEY_B, key_id=2, old_keys={1: KEY_A})
    assert new.open(blob, aad=b"a") == {"mrn": "1"}
    assert new.needs_rekey(blob)
    fresh = new.seal({"mrn": "1"}, aad=b"a")
    assert fresh[1] == 2 and not new.needs_rekey(fresh)
    with pytest.raises(PhiBoxError, match="unknown key id"):
        old.open(fresh, aad=b"a")


def test_phi_box_from_secret_keyring() -> None:
    text_a = "hex:" + KEY_A.hex()
    text_b = "base64:" + base64.b64encode(KEY_B).decode()
    blob = PhiBox.from_secret(text_a).seal({"x": 1}, aad=b"")
    rotated = PhiBox.from_secret(f"2:{text_b}, 1:{text_a}")
    assert rotated.key_id == 2
    assert rotated.open(blob, aad=b"") == {"x": 1}


@pytest.mark.parametrize(
    "text",
    [
        KEY_A.hex(),
        "hex:" + KEY_A.hex().upper(),
        base64.b64encode(KEY_A).decode(),
        "base64:" + base64.urlsafe_b64encode(KEY_A).decode().rstrip("="),
    ],
)
def test_key_formats(text: str) -> None:
    assert parse_key(text) == KEY_A


@pytest.mark.parametrize(
    "text", ["", "correct horse battery staple", "hex:abcd", "base64:AAAA", "hex:zz" * 32]
)
def test_bad_keys_are_refused_with_the_setting_name(text: str) -> None:
    with pytest.raises(KeyFormatError, match="PHONE_HASH_KEY") as info:
        parse_key(text, setting="PHONE_HASH_KEY")
    assert text not in str(info.value) or not text


def test_keyring_errors() -> None:
    key = KEY_A.hex()
    with pytest.raises(KeyFormatError, match="twice"):
        parse_keyring(f"1:{key},1:{key}")
    with pytest.raises(KeyFormatError, match="1..255"):
        parse_keyring(f"300:{key}")
    with pytest.raises(KeyFormatError, match="empty"):
        parse_keyring(" , ")
    assert parse_keyring(f"{key},{KEY_B.hex()}") == (1, {1: KEY_A, 2: KEY_B})


def test_generated_keys_parse() -> None:
    assert len(parse_key(generate_key_text())) == 32
    assert generate_key_text() != generate_key_text()


def test_confirmation_codes() -> None:
    codes = {confirmation_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert len(code) == 6 and set(code) <= set(CONFIRMATION_ALPHABET)
    assert not set("01OIL") & set(CONFIRMATION_ALPHABET)
    assert len(confirmation_code(8)) == 8
    with pytest.raises(ValueError):
        confirmation_code(2)
