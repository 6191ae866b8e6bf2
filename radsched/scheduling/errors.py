"""Errors of the scheduling use cases, each with the HTTP status and error code of DESIGN.md section 6.

Messages are written for operators and API clients: they name hosts, control ids and fields, never patient
data, so the REST facade can return them verbatim and the SMS engine can log them.
"""

from __future__ import annotations

from typing import ClassVar


class SchedulingError(Exception):
    """Base class; ``http_status`` and ``code`` are what the REST facade answers."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "scheduling_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RisUnavailable(SchedulingError):
    """The RIS could not be reached, or dropped the connection before replying."""

    http_status = 503
    code = "ris_unavailable"


class RisTimeout(SchedulingError):
    """The RIS took the request but did not answer within ``RIS_TIMEOUT_S``."""

    http_status = 504
    code = "ris_timeout"


class RisFailed(SchedulingError):
    """The RIS answered a query with AE/AR, or with something we cannot read, or only with replies to
    other requests."""

    http_status = 502
    code = "ris_error"


class UnknownLocation(SchedulingError):
    http_status = 404
    code = "unknown_location"


class UnknownOrder(SchedulingError):
    """No such order, the MRN does not match it, or it is over: never told apart, on purpose.

    A caller without the order's MRN must not learn that an order id exists, so every refusal of
    ours carries :data:`UNKNOWN_ORDER` (the same status and body bytes); only the RIS's own 404,
    after the MRN matched, says more.
    """

    http_status = 404
    code = "unknown_order"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or UNKNOWN_ORDER)


UNKNOWN_ORDER = "no open order with that id and MRN"


class SlotUnavailable(SchedulingError):
    """The RIS rejected the booking (AE/AR), or the slot is no longer offered."""

    http_status = 409
    code = "slot_unavailable"
