"""Independent validation of the HL7 we build: hl7apy 1.3.5 in strict mode.

Reusable by the daemon's tests: ``assert_valid_hl7(payload)`` raises AssertionError with hl7apy's reason.

Two hl7apy 1.3.5 limitations are worked around here, and only here (documented in docs/dialects.md):

1. *Message structure for 2-component MSH-9.* hl7apy derives the structure from MSH-9.3 or, failing that,
   ``<type>_<trigger>``. v2.3 has no MSH-9.3, and structures such as ``ACK_O01`` or ``SIU_S13`` do not exist
   in its tables (they share ``ACK`` / ``SIU_S12``). We pass the real structure (HL7's own event -> structure
   mapping, the ``_STRUCTURES`` table below) instead of letting hl7apy guess.
2. *Choice groups.* hl7apy validates a ``choice`` group (e.g. ``ORM_O01_CHOICE`` = OBR | RQD | RQ1 | RXO | ODS
   | ODT) as if it were a sequence, so every alternative is "required" and no ORM can pass. We validate those
   groups with every alternative optional and then check ourselves that exactly one alternative is present.
"""

from __future__ import annotations

import importlib
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import get_message_info, parse_segments

# (type, trigger) -> structure where it is not simply "<type>_<trigger>".
_STRUCTURES = {
    ("ACK", ""): "ACK",
    ("QRY", "Q02"): "QRY_Q01",
    ("SIU", "S13"): "SIU_S12",
    ("SIU", "S14"): "SIU_S12",
    ("SIU", "S15"): "SIU_S12",
    ("SIU", "S17"): "SIU_S12",
    ("SIU", "S26"): "SIU_S12",
}

_CHARSETS = {
    "": "ascii",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
}

_NEAREST = {"2.7.1": "2.7"}

_patched: set[str] = set()


def _relax_choice_groups(version: str) -> None:
    """Make every alternative of every choice group optional in hl7apy's tables for ``version`` (once)."""
    if version in _patched:
        return
    module = importlib.import_module(f"hl7apy.v{version.replace('.', '_')}.groups")
    groups: dict[str, Any] = module.GROUPS
    for kind, children in groups.values():
        if kind == "choice":
            for child in (
                children
            ):  # lists inside hl7apy's tables: mutate in place, shared by all references
                child[2] = (0, child[2][1])
    _patched.add(version)


def _structure(msg_type: str, trigger: str, declared: str) -> str:
    if declared:
        return declared
    if msg_type == "ACK":
        return "ACK"
    return _STRUCTURES.get((msg_type, trigger), f"{msg_type}_{trigger}")


def _check_choices(element: Any, errors: list[str]) -> None:
    reference = getattr(element, "reference", None)
    if reference and reference[0] == "choice":
        names = {c.name for c in element.children}
        if len(names) != 1:
            errors.append(f"choice group {element.name} has {len(names)} alternatives present")
    for child in getattr(element, "children", []):
        if child.classname in ("Group", "Message"):
            _check_choices(child, errors)


def decode(payload: bytes) -> str:
    first = payload.split(b"\r", 1)[0]
    fields = first.split(first[3:4])
    msh18 = fields[17].decode("ascii").strip().upper() if len(fields) > 17 else ""
    return payload.decode(_CHARSETS.get(msh18, "utf-8"))


def validate_hl7(payload: bytes) -> Message:
    """Parse with hl7apy strict validation and validate; returns the hl7apy message or raises."""
    assert isinstance(payload, bytes), "builders must return bytes"
    assert b"\n" not in payload, "LF in a built message"
    assert payload.endswith(b"\r"), "segments must end with CR"
    text = decode(payload).rstrip("\r")
    encoding_chars, _guess, version = get_message_info(text)
    # hl7apy has no 2.7.1 tables; 2.7.1 changed no segment we build, so check it as 2.7.
    version = _NEAREST.get(version, version)
    msh = text.split("\r", 1)[0].split(text[3])
    msh9 = [*msh[8].split(encoding_chars["COMPONENT"]), "", "", ""]
    structure = _structure(msh9[0], msh9[1], msh9[2])
    _relax_choice_groups(version)
    message = Message(
        name=structure,
        version=version,
        validation_level=VALIDATION_LEVEL.STRICT,
        encoding_chars=encoding_chars,
    )
    message.children = parse_segments(
        text,
        message.version,
        encoding_chars,
        VALIDATION_LEVEL.STRICT,
        message.reference,
        find_groups=True,
    )
    message.validate()
    errors: list[str] = []
    _check_choices(message, errors)
    assert not errors, "; ".join(errors)
    return message


def assert_valid_hl7(payload: bytes) -> None:
    """Assert that ``payload`` is a valid message of its declared version and structure (hl7apy strict)."""
    try:
        validate_hl7(payload)
    except AssertionError:
        raise
    except Exception as exc:  # hl7apy raises many unrelated types; report them uniformly
        raise AssertionError(
            f"hl7apy strict validation failed: {type(exc).__name__}: {exc}"
        ) from exc


__all__ = ["assert_valid_hl7", "decode", "validate_hl7"]
