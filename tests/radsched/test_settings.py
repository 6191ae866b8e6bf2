"""Settings: public names, precedence, clear one-line errors, generated secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from radsched.errors import ConfigError
from radsched.secrets_store import resolve_secrets
from radsched.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RADSCHED_") or key == "STATE_DIRECTORY":
            monkeypatch.delenv(key)


def test_defaults_match_the_public_contract() -> None:
    s = load_settings()
    assert s.http_listen == "127.0.0.1:3010"
    assert s.mllp_listen == "127.0.0.1:2575"
    assert s.ris_dialect == "ch10-2.5.1"
    assert s.ris_timeout_s == 15
    assert s.modality_defaults == ("CR", "DX")
    assert s.quiet_hours == "20:00-09:00"
    assert s.timezone == "America/New_York"
    assert s.embedded and s.console_sms
    assert s.data_dir == Path("var")


def test_state_directory_from_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/radsched")
    assert load_settings().data_dir == Path("/var/lib/radsched")


def test_environment_wins_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "radsched.toml"
    cfg.write_text('http_listen = "0.0.0.0:8080"\nris_timeout_s = 3\n[templates]\nx = "y"\n')
    monkeypatch.setenv("RADSCHED_CONFIG", str(cfg))
    monkeypatch.setenv("RADSCHED_HTTP_LISTEN", "127.0.0.1:9999")
    s = load_settings()
    assert s.http_listen == "127.0.0.1:9999"
    assert s.ris_timeout_s == 3


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RADSCHED_NOPE": "1"}, "RADSCHED_NOPE: unknown setting"),
        ({"RADSCHED_RIS_TIMEOUT_S": "-1"}, "RADSCHED_RIS_TIMEOUT_S:"),
        ({"RADSCHED_RIS_DIALECT": "hl7-9"}, "RADSCHED_RIS_DIALECT:"),
        ({"RADSCHED_HTTP_LISTEN": "localhost"}, "RADSCHED_HTTP_LISTEN:"),
        ({"RADSCHED_TIMEZONE": "Mars/Olympus"}, "RADSCHED_TIMEZONE: unknown time zone"),
        ({"RADSCHED_QUIET_HOURS": "8pm-9am"}, "RADSCHED_QUIET_HOURS:"),
        ({"RADSCHED_DATABASE_URL": "mysql://u:hunter2@db/x"}, "RADSCHED_DATABASE_URL:"),
        ({"RADSCHED_DATABASE_URL": "postgresql://u:hunter2@db:99999/x"}, "invalid port"),
    ],
)
def test_bad_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "hunter2" not in message


def test_unreadable_toml_and_unknown_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("http_listen = \n")
    monkeypatch.setenv("RADSCHED_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="RADSCHED_CONFIG: .* is not valid TOML"):
        load_settings()
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('htp_listen = "1.2.3.4:5"\n')
    monkeypatch.setenv("RADSCHED_CONFIG", str(unknown))
    with pytest.raises(ConfigError, match="RADSCHED_HTP_LISTEN: unknown setting"):
        load_settings()
    monkeypatch.setenv("RADSCHED_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_secrets_generated_once_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADSCHED_DATA_DIR", str(tmp_path))
    first = resolve_secrets(load_settings())
    second = resolve_secrets(load_settings())
    assert first.values() == second.values()
    assert len(first.phi_key) == 64 and len(first.api_keys) == 1
    for path in (tmp_path / "secrets").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert "redacted" in repr(first) and first.phi_key not in repr(first)


def test_configured_secrets_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSCHED_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RADSCHED_API_KEYS", "key-one, key-two")
    assert resolve_secrets(load_settings()).api_keys == ("key-one", "key-two")


def test_production_requires_phone_and_phi_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADSCHED_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RADSCHED_DATABASE_URL", "postgresql://radsched@db.example:5432/radsched")
    with pytest.raises(ConfigError) as info:
        resolve_secrets(load_settings())
    assert "RADSCHED_PHONE_HASH_KEY and RADSCHED_PHI_KEY: required" in str(info.value)
    assert not (tmp_path / "secrets" / "PHI_KEY").exists()
