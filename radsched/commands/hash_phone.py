"""``radsched hash-phone NUMBER``: the keyed hash of a number, for support look-ups in the audit log.

Reads the key the daemon uses: ``PHONE_HASH_KEY`` from the settings, else (embedded defaults) the
one generated into ``DATA_DIR/secrets``. Touches no database, so it works beside a running daemon.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["hash_phone", "register"]


def hash_phone(number: str, key: bytes, region: str = "US") -> tuple[str, str] | None:
    """(E.164, hash), or None when ``number`` is not a valid phone number."""
    from radsched.privacy import normalise_phone, phone_hash

    e164 = normalise_phone(number, region)
    return (e164, phone_hash(key, e164)) if e164 else None


def _run(args: argparse.Namespace) -> int:
    from radsched.errors import ConfigError
    from radsched.privacy import KeyFormatError, parse_key
    from radsched.secrets_store import stored_secret
    from radsched.settings import load_settings

    settings = load_settings()
    try:
        key = parse_key(
            stored_secret(settings, "PHONE_HASH_KEY"),
            setting="RADSCHED_PHONE_HASH_KEY",
        )
    except KeyFormatError as exc:
        raise ConfigError(str(exc)) from None
    result = hash_phone(args.number, key, args.region)
    if result is None:
        print("radsched hash-phone: not a valid phone number", file=sys.stderr)
        return 2
    e164, hashed = result
    # The number is the operator's own input; echo only its masked form, so that a pasted
    # terminal transcript does not carry the full number next to its hash.
    print(f"{hashed}  (E.164 ...{e164[-4:]})" if args.verbose else hashed)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "hash-phone", help="print the keyed hash of a phone number (for audit-log look-ups)"
    )
    parser.add_argument("number", metavar="NUMBER", help="any common format; US if no country code")
    parser.add_argument("--region", default="US", help="region for numbers without +country")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the last 4 digits")
    parser.set_defaults(func=_run)
