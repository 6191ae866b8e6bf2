"""Site dialects: pick one by name with :func:`get_dialect`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, tzinfo

from ..errors import ConfigError
from ..ids import Clock, ControlIdSource, random_control_ids, system_clock
from ..model import DEFAULT_LOCAL, DEFAULT_REMOTE, Party
from .base import Dialect
from .ch10 import Ch10Dialect
from .qie23 import Qie23Dialect
from .slotmemo import SlotMemo

DIALECTS: dict[str, type[Dialect]] = {cls.name: cls for cls in (Ch10Dialect, Qie23Dialect)}


def get_dialect(
    name: str,
    overrides: Mapping[str, object] | None = None,
    *,
    local: Party = DEFAULT_LOCAL,
    remote: Party = DEFAULT_REMOTE,
    tz: tzinfo = UTC,
    clock: Clock = system_clock,
    control_ids: ControlIdSource = random_control_ids,
    slot_memo: SlotMemo | None = None,
) -> Dialect:
    """The dialect called ``name`` (``ch10-2.5.1`` or ``qie-2.3``) with site ``overrides`` applied.

    ``local`` is MSH-3/4 of what we send (``SENDING_APP``/``SENDING_FACILITY``), ``remote`` MSH-5/6 of the RIS;
    ``tz`` the site time zone (for wall-clock values without an offset, and for the times we write);
    ``slot_memo`` keeps the slots of repeated slot answers (slotmemo.py; 64 answers by default).
    Raises :class:`~channels.errors.ConfigError` naming the bad name or override.
    """
    try:
        cls = DIALECTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dialect {name!r} (known: {', '.join(sorted(DIALECTS))})"
        ) from None
    return cls(
        overrides,
        local=local,
        remote=remote,
        tz=tz,
        clock=clock,
        control_ids=control_ids,
        slot_memo=slot_memo,
    )


__all__ = ["DIALECTS", "Ch10Dialect", "Dialect", "Qie23Dialect", "get_dialect"]
