"""Exceptions raised by the channels package.

Two families matter to the daemon and are kept apart on purpose:

* :class:`ParseError` — the bytes are not a message we can read (bad MSH, wrong message type, a required field
  missing). Its ``reason`` is written for humans and goes into the NAK/ERR text.
* :class:`ControlIdMismatch` — a well-formed reply that answers a *different* request (MSA-2 is not the MSH-10
  we sent). This is not a parse failure: a late reply to an earlier, timed-out request looks exactly like this,
  and taking it as the answer to the current request is the Mirth #1441 data-loss bug. The daemon counts and
  discards these, so it must be able to catch them without catching :class:`ParseError`.
"""

from __future__ import annotations


class ChannelError(Exception):
    """Base class of every error raised by :mod:`channels`."""


class ParseError(ChannelError):
    """The input cannot be read as the expected HL7 message.

    ``reason`` is short, human-readable and free of PHI (it never quotes field contents), because it is sent
    back to the peer in MSA-3/ERR and written to logs. ``hl7_error_code`` is the table 0357 code that fits.
    """

    def __init__(self, reason: str, *, hl7_error_code: str = "100", location: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hl7_error_code = hl7_error_code
        # "SEG-field" of the offending field when known (goes into ERR-1 / ERR-2).
        self.location = location


class ControlIdMismatch(ChannelError):
    """A response whose MSA-2 does not match the control id of the request it was read for."""

    def __init__(self, expected: str, received: str) -> None:
        super().__init__(f"reply acknowledges control id {received!r}, expected {expected!r}")
        self.expected = expected
        self.received = received


class ConfigError(ChannelError, ValueError):
    """A dialect name or site override is invalid; the message names the offending key."""


class ResponseError(ChannelError):
    """The peer answered our request (right control id) with an error: MSA-1 AE/AR/CE/CR or QAK-2 AE/AR.

    For the REST facade this is "RIS answered with an error" (502), not "unparseable" — the reply was read fine.
    Booking rejections are *not* raised: they are a normal :class:`~channels.model.BookingResult`.
    """

    def __init__(self, code: str, reason: str, error_code: str = "") -> None:
        super().__init__(f"{code}: {reason}" if reason else code)
        self.code = code
        self.reason = reason
        self.error_code = error_code
