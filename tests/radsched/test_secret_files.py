"""Secrets the systemd way: ``RADSCHED_NAME_FILE`` and ``$CREDENTIALS_DIRECTORY`` (LoadCredential=).

Order for each secret: the variable, else its ``_FILE``, else the credential ``radsched.name``, else
the TOML file and, for generated ones, ``DATA_DIR/secrets``. The phone-hash and PHI keys supplied from
outside never get a copy in DATA_DIR (docs/deploy.md, "Secrets outside DATA_DIR").
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import pytest

from radsched.cli import main
from radsched.errors import ConfigError
from radsched.privacy import phone_hash
from radsched.secrets_store import resolve_secrets
from radsched.settings import SECRET_SETTINGS, credential_name, load_settings
from tests.daemonproc import DaemonProcess


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RADSCHED_") or key in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
            monkeypatch.delenv(key)


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def credentials(tmp_path: Path, **values: str) -> Path:
    """A directory laid out as systemd's $CREDENTIALS_DIRECTORY, one file per credential."""
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o700, exist_ok=True)
    for name, value in values.items():
        private_file(directory / credential_name(name), value, 0o400)
    return directory


def test_every_secret_setting_can_come_from_a_file_or_a_credential() -> None:
    assert set(SECRET_SETTINGS) == {
        "database_url",
        "api_keys",
        "order_tokens",
        "twilio_auth_token",
        "phone_hash_key",
        "phi_key",
        "scheduling_api_key",
        "shadow_api_key",
    }
    assert credential_name("phi_key") == "radsched.phi_key"


def test_variable_then_file_then_credential_then_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = credentials(
        tmp_path,
        api_keys="from-credential",
        order_tokens="from-credential",
        twilio_auth_token="from-credential",
        phi_key="from-credential",
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    toml = tmp_path / "radsched.toml"
    toml.write_text('phi_key = "from-toml"\nphone_hash_key = "from-toml"\n')
    monkeypatch.setenv("RADSCHED_CONFIG", str(toml))
    monkeypatch.setenv("RADSCHED_API_KEYS", "from-variable")
    monkeypatch.setenv(
        "RADSCHED_ORDER_TOKENS_FILE", str(private_file(tmp_path / "tokens", "from-file\n"))
    )
    monkeypatch.setenv("RADSCHED_TWILIO_AUTH_TOKEN", "")  # empty is unset: the credential counts
    s = load_settings()
    assert s.api_keys and s.api_keys.get_secret_value() == "from-variable"
    assert s.order_tokens and s.order_tokens.get_secret_value() == "from-file"  # newline stripped
    assert s.twilio_auth_token and s.twilio_auth_token.get_secret_value() == "from-credential"
    assert s.phi_key and s.phi_key.get_secret_value() == "from-credential"
    assert s.phone_hash_key and s.phone_hash_key.get_secret_value() == "from-toml"
    assert "from-" not in repr(s)


def test_a_dsn_from_a_credential_means_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = "postgresql://radsched:pw-in-credential@db.example:5432/radsched"
    creds = credentials(tmp_path, database_url=dsn + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    s = load_settings()
    assert not s.embedded
    assert s.database_url and s.database_url.get_secret_value() == dsn


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("dir", "is a directory"),
        ("", "is empty"),
        ("\n", "is empty"),
        (b"\xff\xfe key", "is not UTF-8 text"),
    ],
)
def test_a_bad_secret_file_is_one_line_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes | None, expected: str
) -> None:
    path = tmp_path / "phi_key"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    monkeypatch.setenv("RADSCHED_PHI_KEY_FILE", str(path))
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("RADSCHED_PHI_KEY_FILE: ") and str(path) in message
    assert expected in message and "\n" not in message


def test_variable_and_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADSCHED_PHI_KEY", "a" * 64)
    monkeypatch.setenv("RADSCHED_PHI_KEY_FILE", str(private_file(tmp_path / "k", "b" * 64)))
    with pytest.raises(
        ConfigError, match="RADSCHED_PHI_KEY and RADSCHED_PHI_KEY_FILE are both set"
    ):
        load_settings()


def test_only_secrets_have_a_file_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSCHED_HTTP_LISTEN_FILE", "/etc/radsched/listen")
    with pytest.raises(ConfigError, match="RADSCHED_HTTP_LISTEN_FILE: unknown setting"):
        load_settings()


def test_a_secret_file_others_may_read_is_warned_about_without_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = secrets.token_hex(32)
    monkeypatch.setenv("RADSCHED_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RADSCHED_PHI_KEY_FILE", str(private_file(tmp_path / "phi", key, 0o644)))
    with caplog.at_level(logging.WARNING, logger="radsched.secrets"):
        assert resolve_secrets(load_settings()).phi_key == key
    assert "RADSCHED_PHI_KEY_FILE: " in caplog.text and "(mode 0644)" in caplog.text
    assert key not in caplog.text


def test_keys_from_credentials_leave_no_copy_in_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hash_key, phi_key = secrets.token_hex(32), secrets.token_hex(32)
    data = tmp_path / "data"
    monkeypatch.setenv("RADSCHED_DATA_DIR", str(data))
    creds = credentials(tmp_path, phone_hash_key=hash_key + "\n", phi_key=phi_key)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    resolved = resolve_secrets(load_settings())
    assert (resolved.phone_hash_key, resolved.phi_key) == (hash_key, phi_key)
    stored = {p.name for p in (data / "secrets").iterdir()}
    assert stored == {"API_KEYS", "ORDER_TOKENS", "TWILIO_AUTH_TOKEN"}  # generated, as before


def test_hash_phone_uses_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hash_key = secrets.token_hex(32)
    data = tmp_path / "data"
    monkeypatch.setenv("RADSCHED_DATA_DIR", str(data))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials(tmp_path, phone_hash_key=hash_key)))
    assert main(["hash-phone", "(212) 555-0123"]) == 0
    assert capsys.readouterr().out.strip() == phone_hash(bytes.fromhex(hash_key), "+12125550123")
    assert not (data / "secrets" / "PHONE_HASH_KEY").exists()


def test_a_copy_left_in_data_dir_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("RADSCHED_DATA_DIR", str(data))
    generated = resolve_secrets(load_settings()).phone_hash_key  # embedded defaults: in DATA_DIR
    creds = credentials(tmp_path, phone_hash_key=generated)  # moved out... but copied, not moved
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with caplog.at_level(logging.WARNING, logger="radsched.secrets"):
        assert resolve_secrets(load_settings()).phone_hash_key == generated
    assert f"{data / 'secrets' / 'PHONE_HASH_KEY'}: a PHONE_HASH_KEY is still stored" in caplog.text
    assert generated not in caplog.text


def test_daemon_on_credentials_keeps_the_keys_out_of_data_dir(
    data_dir: Path, tmp_path: Path
) -> None:
    """systemd's way end to end: no key in the environment, none written beside the database."""
    creds = credentials(
        tmp_path, phone_hash_key=secrets.token_hex(32) + "\n", phi_key=secrets.token_hex(32)
    )
    daemon = DaemonProcess(data_dir, env={"CREDENTIALS_DIRECTORY": str(creds)}).start()
    try:
        assert "READY=1" in daemon.notifications[-1]
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert (data_dir / "pg" / "data" / "PG_VERSION").exists()
    stored = {p.name for p in (data_dir / "secrets").iterdir()}
    assert not stored & {"PHONE_HASH_KEY", "PHI_KEY"}, stored

    # Started once without the credentials, it must not invent a new key for a database written
    # with the old one (every stored hash and ciphertext would be orphaned): one line, exit 2.
    bare = DaemonProcess(data_dir).start(wait_ready=False)
    assert bare.wait(60) == 2
    bare.close()
    lines = bare.log().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("radsched: RADSCHED_PHONE_HASH_KEY: not configured and not in")
    assert "radsched.phone_hash_key" in lines[0]
    assert not (data_dir / "secrets" / "PHONE_HASH_KEY").exists()


def test_daemon_with_a_missing_secret_file_exits_2_naming_it(data_dir: Path) -> None:
    missing = data_dir.parent / "no-such-phi-key"
    daemon = DaemonProcess(data_dir, env={"RADSCHED_PHI_KEY_FILE": str(missing)})
    daemon.start(wait_ready=False)
    assert daemon.wait(60) == 2
    daemon.close()
    assert daemon.log().strip() == (
        f"radsched: RADSCHED_PHI_KEY_FILE: file {missing} does not exist"
    )
