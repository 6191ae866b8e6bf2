"""Settings: the public names of DESIGN.md section 5, read from the environment and a TOML file.

Precedence (highest first): environment variables with the ``RADSCHED_`` prefix, then the TOML file
named by ``RADSCHED_CONFIG``, then defaults. Secrets are ``SecretStr`` so that they never appear in a
repr, a log line or an error message. ``load_settings`` turns every validation problem into a
``ConfigError`` whose message names the setting.

A secret setting (every ``SecretStr`` field, :data:`SECRET_SETTINGS`) may also come from a file, so
that it need not sit in the environment: when ``RADSCHED_NAME`` is unset or empty, from the file named
by ``RADSCHED_NAME_FILE``, else from the systemd credential ``radsched.name`` in
``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``, systemd/radsched.service), else the TOML file and,
for the generated ones, ``DATA_DIR/secrets`` (radsched/secrets_store.py). docs/deploy.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mllp import PeerAllowList
from radsched.beside.roles import Role, check_combination, parse_roles
from radsched.conversation.reminders import parse_reminder_window, parse_reminders
from radsched.errors import ConfigError

ENV_PREFIX = "RADSCHED_"
# Environment variables with our prefix that are not settings themselves.
_NON_SETTING_ENV = {"RADSCHED_CONFIG", "RADSCHED_TEST_DATABASE_URL"}
DIALECTS = ("ch10-2.5.1", "qie-2.3")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")  # an RFC 9110 token
# A secret's systemd credential is ``radsched.`` + the setting's lower-case name (``radsched.phi_key``):
# one name for the credential id, the file in /etc/credstore and $CREDENTIALS_DIRECTORY.
CREDENTIAL_PREFIX = "radsched."
FILE_SUFFIX = "_FILE"
_MAX_SECRET_FILE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, value: str, *, setting: str) -> HostPort:
        host, sep, port_text = value.strip().rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"{setting} must look like HOST:PORT, got {value!r}")
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(f"{setting} port must be 0..65535, got {port}")
        return cls(host.strip("[]"), port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SenderRule:
    """One ``RELAY_SENDERS`` entry: MSH-3 (``application``) and MSH-4 (``facility``), ``*`` for any,
    compared without regard to case; ``peers`` restricts it to addresses (None: from anywhere)."""

    application: str
    facility: str
    peers: PeerAllowList | None = None

    def allows(self, application: str, facility: str, host: str | None) -> bool:
        return (
            self.application in ("*", application.casefold())
            and self.facility in ("*", facility.casefold())
            and (self.peers is None or (host is not None and self.peers(host)))
        )

    @property
    def is_open(self) -> bool:
        """Any sender from any address: the relay is open to everyone who reaches MLLP_LISTEN."""
        return self.application == self.facility == "*" and self.peers is None


@dataclass(frozen=True, slots=True)
class RelaySenders:
    """``RELAY_SENDERS``: who may have an SIU relayed to the EMRs (issue 11 item 4, docs/deploy.md).

    Comma-separated entries ``APP^FACILITY[@ADDRESS-OR-CIDR]`` (``*`` for either part, ``*`` alone for
    ``*^*``, ``@ADDRESS`` alone for ``*^*@ADDRESS``), the word ``ris`` (any MSH-3/4 from the RIS's host,
    resolved from ``RIS_ADDR`` at start-up, or this host when RIS_ADDR is unset), or ``none`` alone.
    """

    rules: tuple[SenderRule, ...]
    ris: bool = False

    @classmethod
    def parse(cls, text: str) -> RelaySenders:
        entries = [e.strip() for e in text.split(",") if e.strip()]
        if [e.lower() for e in entries] == ["none"]:
            return cls(())
        if not entries:
            raise ValueError("empty: list senders, or say ris or none")
        rules: list[SenderRule] = []
        ris = False
        for entry in entries:
            if entry.lower() == "ris":
                ris = True
                continue
            who, at, where = entry.partition("@")
            who = who.strip() or "*"
            if who == "*":
                who = "*^*"
            app, caret, facility = who.partition("^")
            app, facility = app.strip(), facility.strip()
            if not caret or not app or not facility or "^" in facility:
                raise ValueError(
                    f"{entry!r} must look like APP^FACILITY[@ADDRESS] (* for any), ris or none"
                )
            peers = None
            if at:
                try:
                    peers = PeerAllowList([where])
                except ValueError as exc:
                    raise ValueError(f"{entry!r}: {exc}") from None
            rules.append(SenderRule(app.casefold(), facility.casefold(), peers))
        return cls(tuple(rules), ris)

    def with_ris(self, addresses: tuple[str, ...]) -> RelaySenders:
        """The policy with ``ris`` replaced by its addresses (any MSH-3/4 from them)."""
        if not self.ris:
            return self
        extra = tuple(SenderRule("*", "*", PeerAllowList([a])) for a in addresses)
        return RelaySenders(self.rules + extra)

    def allows(self, application: str, facility: str, host: str | None) -> bool:
        return any(rule.allows(application, facility, host) for rule in self.rules)

    @property
    def is_open(self) -> bool:
        return any(rule.is_open for rule in self.rules)


def _default_data_dir() -> Path:
    # systemd's StateDirectory= exports STATE_DIRECTORY (possibly a colon-separated list).
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    return Path("var")


def credential_name(setting: str) -> str:
    """The systemd credential id of a secret setting (``phi_key`` -> ``radsched.phi_key``)."""
    return CREDENTIAL_PREFIX + setting.lower()


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or SecretStr in get_args(field.annotation)


@dataclass(frozen=True, slots=True)
class SecretFile:
    """Where a secret setting is read from when its environment variable is empty."""

    setting: str  # the field name, e.g. "phi_key"
    label: str  # what an error names: "RADSCHED_PHI_KEY_FILE" or "RADSCHED_PHI_KEY (credential …)"
    path: Path
    credential: bool  # True: systemd's $CREDENTIALS_DIRECTORY, which systemd keeps private


def secret_files(secrets: tuple[str, ...], environ: Mapping[str, str]) -> list[SecretFile]:
    """The file each secret comes from: ``RADSCHED_NAME`` wins, then ``_FILE``, then a credential.

    Setting both ``RADSCHED_NAME`` and ``RADSCHED_NAME_FILE`` is a mistake (which one did the operator
    mean?) and raises ``ConfigError``. A credential that systemd did not load is simply absent.
    """
    env = {key.upper(): value for key, value in environ.items()}
    credentials = environ.get("CREDENTIALS_DIRECTORY", "")
    found: list[SecretFile] = []
    for name in secrets:
        var = ENV_PREFIX + name.upper()
        from_file = env.get(var + FILE_SUFFIX, "").strip()
        if env.get(var, "").strip():
            if from_file:
                raise ConfigError(f"{var} and {var}{FILE_SUFFIX} are both set: keep one")
            continue
        if from_file:
            found.append(SecretFile(name, var + FILE_SUFFIX, Path(from_file), credential=False))
            continue
        if credentials:
            path = Path(credentials) / credential_name(name)
            if path.exists() or path.is_symlink():
                label = f"{var} (credential {credential_name(name)})"
                found.append(SecretFile(name, label, path, credential=True))
    return found


def read_secret_file(source: SecretFile) -> str:
    """The secret in ``source.path`` without its trailing newline; errors name the setting, never the value."""
    label, path = source.label, source.path
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{label}: file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: {path} is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"{label}: file {path} is not readable by this user") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {path}: {exc.strerror}") from None
    if len(data) > _MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{label}: file {path} is larger than 64 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: file {path} is not UTF-8 text") from None
    text = text.rstrip("\r\n")  # the newline an editor or `echo` leaves
    if not text.strip():
        raise ConfigError(f"{label}: file {path} is empty")
    return text


def loose_secret_files(secrets: tuple[str, ...], environ: Mapping[str, str]) -> list[str]:
    """Warnings for ``*_FILE`` secrets that group or others may read (credentials are systemd's)."""
    warnings: list[str] = []
    for source in secret_files(secrets, environ):
        if source.credential:
            continue
        try:
            mode = stat.S_IMODE(source.path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            warnings.append(
                f"{source.label}: {source.path} is readable by group or others (mode {mode:04o}); "
                "make it 0600 or 0400, or use a systemd credential (docs/deploy.md)"
            )
    return warnings


class _SecretFilesSource(PydanticBaseSettingsSource):
    """Secret settings read from ``RADSCHED_NAME_FILE`` or ``$CREDENTIALS_DIRECTORY``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every secret at once

    def __call__(self) -> dict[str, Any]:
        names = tuple(n for n, f in self.settings_cls.model_fields.items() if _is_secret(f))
        return {s.setting: read_secret_file(s) for s in secret_files(names, os.environ)}


class Settings(BaseSettings):
    """Every public setting. Field names are the setting names without the prefix, lower-cased."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
    )

    database_url: SecretStr | None = None
    data_dir: Path = Field(default_factory=_default_data_dir)
    http_listen: str = "127.0.0.1:3010"
    # The admin console (docs/console.md), on its own listener so it can be fenced apart.
    admin_listen: str | None = "127.0.0.1:3011"  # empty: no console
    public_url: str = "http://127.0.0.1:3010"
    api_keys: SecretStr | None = None
    order_tokens: SecretStr | None = None
    mllp_listen: str = "127.0.0.1:2575"
    # SO_REUSEPORT on MLLP_LISTEN and HTTP_LISTEN: a second daemon on the same host and database can
    # listen on the same addresses and the kernel spreads connections (docs/deploy.md).
    reuse_port: bool = False
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    mllp_tls_ca: Path | None = None
    ris_addr: str | None = None
    ris_dialect: Literal["ch10-2.5.1", "qie-2.3"] = "ch10-2.5.1"
    ris_timeout_s: float = Field(default=15.0, gt=0, le=600)
    # TLS to the RIS from the environment; each overrides the [ris] table's tls* key (docs/integration.md).
    ris_tls: bool = False
    ris_tls_ca: Path | None = None
    ris_tls_cert: Path | None = None
    ris_tls_key: Path | None = None
    ris_tls_server_name: str | None = None
    # How long RIS locations per modality are cached (0 = ask the RIS every time).
    location_cache_s: float = Field(default=300.0, ge=0, le=86_400)
    emr_routes: str | None = None
    sending_app: str = Field(default="RADSCHED", min_length=1, max_length=180)
    sending_facility: str = Field(default="RADSCHED", min_length=1, max_length=180)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    phone_hash_key: SecretStr | None = None
    phi_key: SecretStr | None = None
    enabled_modalities: str = "CR,DX"
    scheduling_phone: str = ""
    practice_name: str = ""
    timezone: str = "America/New_York"
    quiet_hours: str = "20:00-09:00"
    # Issue 13: a RIS outage waits this long before the patient is asked to call (ris_wait.py).
    ris_wait_max_min: int = Field(default=30, ge=1, le=1440)
    # Issue 13 item 3: a staff request waiting longer than this is counted as overdue.
    staff_request_overdue_min: int = Field(default=240, ge=1, le=10080)
    # Issue 13 item 5: the booking confirmation offers the waitlist ("Reply W") when the slot is more
    # than this many days out (-1: never); a freed slot is held this long for each patient offered it.
    waitlist_min_days: int = Field(default=3, ge=-1, le=365)
    waitlist_hold_min: int = Field(default=30, ge=1, le=1440)
    # Issue 13: reminders of appointments booked by text (radsched/conversation/reminders.py): durations
    # before the start (m/h/d, or off), sent only inside the local window (or off: any time).
    reminders: str = "3d,1d"
    reminder_window: str = "09:00-18:00"
    log_format: Literal["json", "text"] | None = None
    # Beyond the public table: operational limits with safe defaults.
    shutdown_grace_s: float = Field(default=10.0, gt=0, le=300)
    mllp_max_connections: int = Field(default=64, ge=1, le=10_000)
    mllp_idle_timeout_s: float = Field(default=600.0, gt=0)
    # 1 MiB: an order, an SIU or an ADT is a few KiB; the 16 MiB of an ORU with a PDF is not for us.
    mllp_max_frame_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # An HL7 batch in one frame is answered by a response batch with every ACK, or only the errors
    # (radsched/inbound/batches.py, docs/interop.md).
    mllp_batch_ack: Literal["all", "errors"] = "all"
    # EMR outbox and retention (radsched/emr, radsched/retention.py; docs/operations.md).
    emr_ack_timeout_s: float = Field(default=30.0, gt=0, le=600)
    emr_max_rejections: int = Field(default=3, ge=1, le=100)
    emr_retry_initial_s: float = Field(default=1.0, gt=0, le=3600)
    emr_retry_max_s: float = Field(default=300.0, gt=0, le=86400)
    emr_failing_alert_s: float = Field(default=300.0, gt=0)
    duplicate_window_days: int = Field(default=30, ge=1, le=3650)
    # Abuse limits (radsched/rest/ratelimit.py, docs/security.md): token buckets per daemon, in
    # memory. A rate of 0 switches that limit off. Per minute: a person's pace, not a machine's.
    rate_limit_api_per_s: float = Field(default=20.0, ge=0, le=100_000)
    rate_limit_api_burst: int = Field(default=100, ge=1, le=1_000_000)
    rate_limit_orders_per_s: float = Field(default=50.0, ge=0, le=100_000)
    rate_limit_orders_burst: int = Field(default=500, ge=1, le=1_000_000)
    rate_limit_sms_per_min: float = Field(default=12.0, ge=0, le=100_000)
    rate_limit_sms_burst: int = Field(default=20, ge=1, le=1_000_000)
    rate_limit_auth_failures_per_min: float = Field(default=6.0, ge=0, le=100_000)
    rate_limit_auth_failures_burst: int = Field(default=20, ge=1, le=1_000_000)
    # Proxies (e.g. nginx on 127.0.0.1) whose X-Forwarded-For names the real client address.
    http_trusted_proxies: str = ""
    # Slow clients: an HTTP connection must complete a request within this long of opening (or
    # of its previous response), and a request body must arrive within http_body_timeout_s.
    http_idle_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    http_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # An MLLP frame that has started must end within this long (a trickling sender is cut off).
    mllp_frame_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # MLLP listener hardening (issue 11 item 3, docs/security.md): who may connect, how many
    # connections one address may hold, how much garbage a connection may send, how big one field
    # may be. Empty MLLP_ALLOWED_PEERS = any address (warned about off loopback without TLS).
    mllp_allowed_peers: str = ""
    mllp_max_connections_per_peer: int = Field(default=16, ge=1, le=10_000)
    mllp_max_framing_errors: int = Field(default=10, ge=1, le=1_000_000)
    mllp_max_field_bytes: int = Field(default=64 * 1024, ge=256, le=1024 * 1024 * 1024)
    # Who may have an SIU relayed to the EMRs (issue 11 item 4): "ris" (the RIS's host) by default,
    # "none", or APP^FACILITY[@ADDRESS] entries (RelaySenders above, docs/deploy.md).
    relay_senders: str = "ris"
    # --- Running beside QIE (issue 17; radsched/beside/roles.py, docs/deploy.md) ---
    # Which parts this daemon runs: gateway (REST facade + RIS client), sms (intake, conversations,
    # texts), emr (SIU outbox and relay).
    roles: str = "gateway,sms,emr"
    # How the sms role reaches the RIS: over HL7 itself, or through an engine's REST channels.
    scheduling_backend: Literal["hl7", "rest"] = "hl7"
    scheduling_url: str | None = None
    scheduling_api_key: SecretStr | None = None
    scheduling_api_key_header: str = "X-API-Key"
    scheduling_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Parallel run: the gateway also asks this engine and records where the answers differ.
    shadow_url: str | None = None
    shadow_api_key: SecretStr | None = None
    shadow_api_key_header: str = "X-API-Key"
    shadow_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Where bookings go in shadow mode: "here" (this gateway books over HL7) or "shadow" (forwarded
    # to the shadowed engine). Never both: a booking is made once.
    shadow_bookings: Literal["here", "shadow"] = "here"
    # A REST answer larger than this is refused (an engine answering with a dump, a proxy's page).
    rest_max_response_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: str) -> str:
        return ",".join(parse_roles(value))

    @field_validator("scheduling_url", "shadow_url")
    @classmethod
    def _engine_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"must be an http(s) base URL without a query, got {value!r}")
        return value.rstrip("/")

    @field_validator("scheduling_api_key_header", "shadow_api_key_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an HTTP header name")
        return value

    @model_validator(mode="after")
    def _roles_fit(self) -> Settings:
        problem = check_combination(
            self.role_set,
            backend=self.scheduling_backend,
            scheduling_url=self.scheduling_url,
            scheduling_key=bool(
                self.scheduling_api_key and self.scheduling_api_key.get_secret_value()
            ),
            shadow_url=self.shadow_url,
            shadow_key=bool(self.shadow_api_key and self.shadow_api_key.get_secret_value()),
        )
        if problem:
            raise ValueError(problem)
        return self

    @property
    def role_set(self) -> tuple[Role, ...]:
        return parse_roles(self.roles)

    @field_validator("database_url")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("postgres", "postgresql"):
            # Never echo the DSN: it may carry a password.
            raise ValueError("must be a postgresql:// or postgres:// URL")
        if not parts.netloc and "host=" not in (parts.query or ""):
            raise ValueError("names no host (expected postgresql://user@host:port/dbname)")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value

    @field_validator("http_listen", "admin_listen", "mllp_listen", "ris_addr")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        HostPort.parse(value, setting="value")
        return value

    @field_validator("public_url", "twilio_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("http_trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",")):
            if part:
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError:
                    raise ValueError(f"{part!r} is not an IP address or network") from None
        return value

    @field_validator("mllp_allowed_peers")
    @classmethod
    def _allowed_peers(cls, value: str) -> str:
        if value.strip():
            PeerAllowList.parse(value)  # ValueError names the entry that is not an address
        return value

    @field_validator("relay_senders")
    @classmethod
    def _relay_senders(cls, value: str) -> str:
        RelaySenders.parse(value)  # ValueError names the entry it cannot read
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        if value.strip().lower() in ("", "off", "none"):
            return "off"
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(f"must look like HH:MM-HH:MM, got {value!r}")
        for part in (start, end):
            hh, colon, mm = part.strip().partition(":")
            if not (colon and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
                raise ValueError(f"must look like HH:MM-HH:MM, got {value!r}")
        return value

    @field_validator("reminders")
    @classmethod
    def _reminders(cls, value: str) -> str:
        offsets = parse_reminders(value)
        return ",".join(o.label for o in offsets) if offsets else "off"

    @field_validator("reminder_window")
    @classmethod
    def _reminder_window(cls, value: str) -> str:
        window = parse_reminder_window(value)
        return str(window) if window is not None else "off"

    @field_validator("enabled_modalities")
    @classmethod
    def _modalities(cls, value: str) -> str:
        codes = [c.strip().upper() for c in value.split(",") if c.strip()]
        for code in codes:
            if not code.isalnum() or len(code) > 16:
                raise ValueError(f"{code!r} is not a DICOM modality code")
        return ",".join(codes)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the TOML file; the TOML file arrives as init kwargs. Secret files and
        # credentials come first but answer only for a secret whose variable is unset or empty.
        return (_SecretFilesSource(settings_cls), env_settings, init_settings)

    # Derived views -------------------------------------------------------------------------

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is set: embedded PostgreSQL and generated secrets."""
        return self.database_url is None

    @property
    def http_addr(self) -> HostPort:
        return HostPort.parse(self.http_listen, setting="HTTP_LISTEN")

    @property
    def admin_addr(self) -> HostPort | None:
        if not self.admin_listen:
            return None
        return HostPort.parse(self.admin_listen, setting="ADMIN_LISTEN")

    @property
    def mllp_addr(self) -> HostPort:
        return HostPort.parse(self.mllp_listen, setting="MLLP_LISTEN")

    @property
    def mllp_allow_list(self) -> PeerAllowList | None:
        """MLLP_ALLOWED_PEERS as the listener's ``allow_peer`` hook; None lets any address in."""
        return (
            PeerAllowList.parse(self.mllp_allowed_peers)
            if self.mllp_allowed_peers.strip()
            else None
        )

    @property
    def relay_policy(self) -> RelaySenders:
        """RELAY_SENDERS parsed; ``ris`` is resolved to addresses by the EMR component at start-up."""
        return RelaySenders.parse(self.relay_senders)

    @property
    def ris_hostport(self) -> HostPort | None:
        return HostPort.parse(self.ris_addr, setting="RIS_ADDR") if self.ris_addr else None

    @property
    def modality_defaults(self) -> tuple[str, ...]:
        return tuple(c for c in self.enabled_modalities.split(",") if c)

    @property
    def console_sms(self) -> bool:
        return not self.twilio_account_sid


#: The secret settings (field names): each may come from a ``_FILE`` or a systemd credential.
SECRET_SETTINGS: tuple[str, ...] = tuple(
    name for name, field in Settings.model_fields.items() if _is_secret(field)
)


def _setting_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + str(loc[0]).upper() if loc else "settings"


def _read_toml(path_text: str) -> dict[str, Any]:
    path = Path(path_text)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"RADSCHED_CONFIG: file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"RADSCHED_CONFIG: file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"RADSCHED_CONFIG: {path} is not valid TOML: {exc}") from None
    # Setting names are case-insensitive in the file too; sections are not settings.
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        name = key.lower()
        if name.startswith(ENV_PREFIX.lower()):
            name = name[len(ENV_PREFIX) :]
        out[name] = value
    return out


def toml_sections() -> dict[str, Any]:
    """Tables of the TOML file (e.g. ``[templates]``), for the components that own them."""
    path_text = os.environ.get("RADSCHED_CONFIG")
    if not path_text:
        return {}
    with Path(path_text).open("rb") as fh:
        data = tomllib.load(fh)
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def load_settings() -> Settings:
    """Read and validate the settings, or raise ``ConfigError`` naming the offending setting."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    known |= {ENV_PREFIX + name.upper() + FILE_SUFFIX for name in SECRET_SETTINGS}
    unknown = sorted(
        key
        for key in os.environ
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() not in known
        and key.upper() not in _NON_SETTING_ENV
    )
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (see the settings table in README.md)")
    config = os.environ.get("RADSCHED_CONFIG")
    file_values = _read_toml(config) if config else {}
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        err = exc.errors()[0]
        message = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a check across settings: its message names the setting itself
            raise ConfigError(message) from None
        name = _setting_name(err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{name}: unknown setting in RADSCHED_CONFIG file") from None
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None
