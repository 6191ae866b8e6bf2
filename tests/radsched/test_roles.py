"""ROLES and the settings of running beside QIE: parsed, and refused with one line naming the setting."""

from __future__ import annotations

import os

import pytest

from radsched.beside.roles import needs, parse_roles
from radsched.errors import ConfigError
from radsched.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RADSCHED_") or key == "STATE_DIRECTORY":
            monkeypatch.delenv(key)


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for key, value in env.items():
        monkeypatch.setenv("RADSCHED_" + key, value)
    return load_settings()


def test_default_is_the_whole_daemon_over_hl7() -> None:
    s = load_settings()
    assert s.role_set == ("gateway", "sms", "emr")
    assert s.roles == "gateway,sms,emr"
    assert s.scheduling_backend == "hl7"
    assert s.shadow_url is None and s.shadow_bookings == "here"


def test_roles_are_normalised() -> None:
    assert parse_roles(" EMR, gateway ,emr") == ("gateway", "emr")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ROLES": "gateway,pager"}, "RADSCHED_ROLES: unknown role 'pager'"),
        ({"ROLES": " , "}, "RADSCHED_ROLES: names no role"),
        ({"ROLES": "sms"}, "RADSCHED_ROLES: the sms role without the gateway role needs"),
        ({"ROLES": "sms,emr"}, "RADSCHED_ROLES: the sms role without the gateway role needs"),
        (
            {"ROLES": "sms", "SCHEDULING_BACKEND": "rest"},
            "RADSCHED_SCHEDULING_URL: required with RADSCHED_SCHEDULING_BACKEND=rest",
        ),
        (
            {
                "ROLES": "sms",
                "SCHEDULING_BACKEND": "rest",
                "SCHEDULING_URL": "http://gw:3010/api/ris",
            },
            "RADSCHED_SCHEDULING_API_KEY: required",
        ),
        (
            {"ROLES": "gateway,emr", "SCHEDULING_BACKEND": "rest"},
            "RADSCHED_SCHEDULING_BACKEND: 'rest' is how the sms role reaches the RIS",
        ),
        (
            {"SCHEDULING_URL": "http://gw:3010/api/ris"},
            "RADSCHED_SCHEDULING_URL: only used with RADSCHED_SCHEDULING_BACKEND=rest",
        ),
        ({"SCHEDULING_BACKEND": "soap"}, "RADSCHED_SCHEDULING_BACKEND:"),
        ({"SCHEDULING_URL": "gw:3010"}, "RADSCHED_SCHEDULING_URL: must be an http(s) base URL"),
        ({"SHADOW_URL": "http://qie/api?x=1"}, "RADSCHED_SHADOW_URL: must be an http(s) base URL"),
        (
            {
                "ROLES": "sms",
                "SCHEDULING_BACKEND": "rest",
                "SCHEDULING_URL": "http://gw/api/ris",
                "SCHEDULING_API_KEY": "k",
                "SHADOW_URL": "http://qie/api",
                "SHADOW_API_KEY": "k",
            },
            "RADSCHED_SHADOW_URL: shadow mode runs in the gateway role",
        ),
        ({"SHADOW_URL": "http://qie/api"}, "RADSCHED_SHADOW_API_KEY: required"),
        ({"SHADOW_BOOKINGS": "both"}, "RADSCHED_SHADOW_BOOKINGS:"),
        ({"SCHEDULING_API_KEY_HEADER": "X Key"}, "RADSCHED_SCHEDULING_API_KEY_HEADER:"),
    ],
)
def test_combinations_that_cannot_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(monkeypatch, **env)
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_secrets_of_the_engines_stay_out_of_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        _load(
            monkeypatch,
            ROLES="gateway,emr",
            SCHEDULING_BACKEND="rest",
            SCHEDULING_API_KEY="s3cr3t-key",
        )
    assert "s3cr3t-key" not in str(info.value)


def test_sms_daemon_over_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _load(
        monkeypatch,
        ROLES="sms",
        SCHEDULING_BACKEND="rest",
        SCHEDULING_URL="http://127.0.0.1:3010/api/ris/",
        SCHEDULING_API_KEY="key-0123456789",
        SCHEDULING_API_KEY_HEADER="Authorization",
    )
    assert s.scheduling_url == "http://127.0.0.1:3010/api/ris"  # type: ignore[attr-defined]
    assert "key-0123456789" not in repr(s)


def test_shadow_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _load(
        monkeypatch,
        ROLES="gateway,emr",
        SHADOW_URL="https://qie.internal/rs",
        SHADOW_API_KEY="k",
        SHADOW_BOOKINGS="shadow",
    )
    assert s.shadow_url == "https://qie.internal/rs"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("roles", "backend", "ris", "facade", "sms", "emr", "mllp", "twilio"),
    [
        (("gateway", "sms", "emr"), "hl7", True, True, True, True, True, True),
        (("gateway",), "hl7", True, True, False, False, False, False),
        (("sms",), "rest", False, False, True, False, True, True),
        (("gateway", "emr"), "hl7", True, True, False, True, True, False),
        (("emr",), "hl7", False, False, False, True, True, False),
    ],
)
def test_what_each_role_sets_up(
    roles: tuple[str, ...],
    backend: str,
    ris: bool,
    facade: bool,
    sms: bool,
    emr: bool,
    mllp: bool,
    twilio: bool,
) -> None:
    got = needs(parse_roles(",".join(roles)), backend=backend)
    assert (got.ris_client, got.rest_facade, got.sms, got.emr_outbox) == (ris, facade, sms, emr)
    assert (got.mllp_listener, got.twilio) == (mllp, twilio)
