"""Secrets resolved at start-up: from settings, or generated once into DATA_DIR on embedded defaults.

On embedded defaults (no DATABASE_URL) a newcomer must not have to invent keys, so missing secrets are
generated with ``secrets`` and written to ``DATA_DIR/secrets/NAME`` with mode 0600, then reused on every
start. Only the daemon generates: a command beside it reads one secret with :func:`stored_secret`,
which says so when there is nothing (:class:`~radsched.errors.NoDaemonData`) instead of inventing a
key of its own. In production (DATABASE_URL set) the phone-hash and PHI keys must be configured explicitly: a
generated key that silently changes with a new DATA_DIR would orphan every stored hash and ciphertext.

Any secret may instead come from a ``*_FILE`` or a systemd credential (radsched/settings.py); then
nothing is written here. The phone-hash and PHI keys in particular belong outside DATA_DIR: with a copy
of DATA_DIR (a backup, a disk image) and the key beside the database, the ten-digit phone space is
searched in seconds and every phone hash reversed. So a key configured elsewhere while a copy still sits
in ``DATA_DIR/secrets`` is warned about at every start, and an embedded database that was written with
a key is never given a freshly generated one (docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from radsched.errors import ConfigError, NoDaemonData
from radsched.settings import (
    SECRET_SETTINGS,
    Settings,
    credential_name,
    loose_secret_files,
)

log = logging.getLogger("radsched.secrets")

_GENERATED = ("API_KEYS", "ORDER_TOKENS", "PHONE_HASH_KEY", "PHI_KEY", "TWILIO_AUTH_TOKEN")
_REQUIRED = ("PHONE_HASH_KEY", "PHI_KEY")  # with DATABASE_URL: configured, never generated
# Keys that protect what the database holds (phone hashes, encrypted PHI): never kept beside it once
# configured elsewhere, and never replaced by a new one under an existing embedded database.
_DATA_KEYS = ("PHONE_HASH_KEY", "PHI_KEY")


@dataclass(frozen=True, slots=True, repr=False)
class Secrets:
    """Resolved secret values. ``repr`` is suppressed so that a stray log call leaks nothing."""

    api_keys: tuple[str, ...]
    order_tokens: tuple[str, ...]
    phone_hash_key: str
    phi_key: str
    twilio_auth_token: str

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"

    def values(self) -> tuple[str, ...]:
        """Every secret string, for the log redaction filter."""
        return (
            *self.api_keys,
            *self.order_tokens,
            self.phone_hash_key,
            self.phi_key,
            self.twilio_auth_token,
        )


def split_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _generate(name: str) -> str:
    if name in ("PHONE_HASH_KEY", "PHI_KEY"):
        return secrets.token_hex(32)  # 256-bit keys, hex so they paste safely into an env file
    return secrets.token_urlsafe(32)


def secrets_dir(data_dir: Path) -> Path:
    return data_dir / "secrets"


def _load(directory: Path, name: str) -> str | None:
    try:
        return (directory / name).read_text(encoding="ascii").strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def _load_or_create(directory: Path, name: str) -> str:
    path = directory / name
    if value := _load(directory, name):
        return value
    value = _generate(name)
    # O_EXCL + 0600: created private, never world-readable even for an instant.
    tmp = directory / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
    return value


def resolve_secrets(settings: Settings) -> Secrets:
    """Return every secret, generating the missing ones on embedded defaults."""
    configured = {name: _configured(settings, name) for name in _GENERATED}
    if not settings.embedded:
        _require([n for n in _REQUIRED if not configured[n]])
        if not settings.console_sms and not configured["TWILIO_AUTH_TOKEN"]:
            raise ConfigError(
                "RADSCHED_TWILIO_AUTH_TOKEN: required when RADSCHED_TWILIO_ACCOUNT_SID is set"
            )
    for warning in loose_secret_files(SECRET_SETTINGS, os.environ):
        log.warning(warning)
    resolved: dict[str, str] = {}
    directory = secrets_dir(settings.data_dir)
    for name in _GENERATED:
        value = configured[name]
        if value:
            resolved[name] = value
            if name in _DATA_KEYS:
                _warn_if_copy_beside_database(directory, name)
        elif settings.embedded or name in ("API_KEYS", "ORDER_TOKENS", "TWILIO_AUTH_TOKEN"):
            if name in _DATA_KEYS:
                _refuse_new_key_for_old_database(settings.data_dir, name)
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            resolved[name] = _load_or_create(directory, name)
    return Secrets(
        api_keys=split_list(resolved["API_KEYS"]),
        order_tokens=split_list(resolved["ORDER_TOKENS"]),
        phone_hash_key=resolved["PHONE_HASH_KEY"],
        phi_key=resolved["PHI_KEY"],
        twilio_auth_token=resolved["TWILIO_AUTH_TOKEN"],
    )


def stored_secret(settings: Settings, name: str) -> str:
    """One secret as the daemon resolved it (``name`` as in ``_GENERATED``), for a command beside it.

    Configured, else read from ``DATA_DIR/secrets``; never generated. Nothing there means no daemon
    has run with this DATA_DIR: :class:`~radsched.errors.NoDaemonData`, and nothing is created.
    """
    if value := _configured(settings, name):
        return value
    if not settings.embedded and name in _REQUIRED:
        _require([name])
    if stored := _load(secrets_dir(settings.data_dir), name):
        return stored
    raise NoDaemonData(settings.data_dir)


def _require(missing: list[str]) -> None:
    if missing:
        names = " and ".join(f"RADSCHED_{n}" for n in missing)
        raise ConfigError(
            f"{names}: required when RADSCHED_DATABASE_URL is set "
            "(generate with: python -c 'import secrets; print(secrets.token_hex(32))')"
        )


def _configured(settings: Settings, name: str) -> str | None:
    return _secret(getattr(settings, name.lower()))


def _warn_if_copy_beside_database(directory: Path, name: str) -> None:
    path = directory / name
    if path.exists():
        log.warning(
            "%s: a %s is still stored in DATA_DIR although RADSCHED_%s is configured; whoever "
            "copies DATA_DIR gets the key beside the database: delete the file once the configured "
            "key is known to be this one (docs/deploy.md, secrets outside DATA_DIR)",
            path,
            name,
            name,
        )


def _refuse_new_key_for_old_database(data_dir: Path, name: str) -> None:
    """A missing key under an embedded database that exists was moved out, not never made."""
    if (secrets_dir(data_dir) / name).exists():
        return
    if (data_dir / "pg" / "data" / "PG_VERSION").exists():
        raise ConfigError(
            f"RADSCHED_{name}: not configured and not in {secrets_dir(data_dir)}, but the embedded "
            f"database in {data_dir / 'pg'} was written with one; supply it (RADSCHED_{name}_FILE, "
            f"the systemd credential {credential_name(name)} or RADSCHED_{name})"
        )


def _secret(value: object) -> str | None:
    if isinstance(value, SecretStr):
        text = value.get_secret_value().strip()
        return text or None
    return None
