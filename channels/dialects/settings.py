"""Site overrides for a dialect: where values travel (field placements) and a few format switches.

Overrides are a flat mapping (or nested tables, flattened with dots) so the daemon can load them from TOML::

    [ris.dialect_overrides]
    "slot_query.location_id" = "QRF-1"      # a field path: SEG-field[(rep)][.component[.subcomponent]]
    "booking.slot_id" = "OBR-20"
    timestamps_with_offset = false
    charset = "8859/1"

Unknown keys, malformed paths and paths into a segment the message does not carry are refused with a
:class:`~channels.errors.ConfigError` naming the key, so a typo stops start-up instead of silently moving a
value nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..charset import is_known
from ..errors import ConfigError
from ..message import FieldPath

# Non-placement settings and their types.
OPTION_TYPES: dict[str, type] = {
    "timestamps_with_offset": bool,
    "charset": str,
    "timezone": str,
    "dsp_separator": str,
    "dsp_list_separator": str,
    "siu_filler_contact": str,
    "siu_entered_by": str,
    "siu_note": str,
    "placer_contact": str,
    "query_limit": int,
    "mrn_authority": str,
}


@dataclass(frozen=True, slots=True)
class Placement:
    """Default path of one logical value and the segments a site may move it to (those the message carries)."""

    default: str
    segments: frozenset[str]
    optional: bool = False
    """An empty string override disables it (e.g. no appointment id in a bare ACK)."""


def flatten(overrides: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def resolve(
    dialect: str,
    placements: Mapping[str, Placement],
    options: Mapping[str, object],
    overrides: Mapping[str, object] | None,
) -> tuple[dict[str, FieldPath | None], dict[str, object]]:
    """Merge ``overrides`` into the dialect defaults; returns (placements, options)."""
    paths: dict[str, FieldPath | None] = {
        key: FieldPath.parse(p.default) if p.default else None for key, p in placements.items()
    }
    opts = dict(options)
    for key, value in flatten(overrides or {}).items():
        if key in placements:
            paths[key] = _placement(dialect, key, value, placements[key])
        elif key in OPTION_TYPES:
            opts[key] = _option(dialect, key, value)
        else:
            known = ", ".join(sorted([*placements, *OPTION_TYPES]))
            raise ConfigError(f"{dialect}: unknown override {key!r} (known: {known})")
    return paths, opts


def _placement(dialect: str, key: str, value: object, spec: Placement) -> FieldPath | None:
    if not isinstance(value, str):
        raise ConfigError(f"{dialect}: override {key!r} must be a field path string like 'AIL-3.4'")
    if not value.strip():
        if spec.optional:
            return None
        raise ConfigError(f"{dialect}: override {key!r} cannot be empty")
    try:
        path = FieldPath.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{dialect}: override {key!r}: {exc}") from None
    if path.segment not in spec.segments:
        allowed = ", ".join(sorted(spec.segments))
        raise ConfigError(
            f"{dialect}: override {key!r}={value!r} names segment {path.segment}, "
            f"which this message does not carry (allowed: {allowed})"
        )
    return path


def _option(dialect: str, key: str, value: object) -> object:
    expected = OPTION_TYPES[key]
    if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
        raise ConfigError(f"{dialect}: override {key!r} must be a {expected.__name__}")
    if key == "charset" and isinstance(value, str) and not is_known(value):
        raise ConfigError(
            f"{dialect}: override 'charset' = {value!r} is not a supported MSH-18 value"
        )
    if key == "timezone" and isinstance(value, str):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{dialect}: override 'timezone' = {value!r} is not an IANA zone"
            ) from None
    if key in ("dsp_separator", "dsp_list_separator") and (
        not isinstance(value, str) or len(value) != 1 or value in "|^~\\&%"
    ):
        raise ConfigError(f"{dialect}: override {key!r} must be one character other than |^~\\&%")
    return value
