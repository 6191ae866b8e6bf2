"""The embedded PostgreSQL keeps the daemon's secrets and its data to itself (issue 11, item 5).

A real daemon on embedded defaults, started with its secrets in the environment (as the systemd
unit and `make run` do): the postmaster's ``/proc/PID/environ`` holds none of them, it runs as the
dedicated account when the daemon is root (not ``nobody``, which other daemons share), its socket
directory is 0700, and a connection without the password, or with a wrong one, is refused. A cluster
left by an older radsched (trust authentication, owned by ``nobody``) is switched over on start.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
from pathlib import Path

import asyncpg
import pytest

from radsched.daemon import running
from radsched.settings import Settings
from radsched.storage import embedded

SECRETS = {
    "RADSCHED_PHI_KEY": secrets.token_hex(32),
    "RADSCHED_PHONE_HASH_KEY": secrets.token_hex(32),
    "RADSCHED_API_KEYS": "embedded-env-key-" + secrets.token_hex(8),
    "RADSCHED_TWILIO_AUTH_TOKEN": "embedded-env-token-" + secrets.token_hex(8),
}


def postmaster_pid(root: Path) -> int:
    return int((root / "data" / "postmaster.pid").read_text().split("\n", 1)[0])


def socket_dir(root: Path) -> Path:
    marker = root / "socket_dir"
    return Path(marker.read_text().strip()) if marker.exists() else root / "run"


async def assert_password_required(root: Path) -> None:
    host = socket_dir(root)
    for dsn in (
        f"postgresql://postgres@/postgres?host={host}",
        f"postgresql://postgres:wrong-{secrets.token_hex(4)}@/postgres?host={host}",
    ):
        with pytest.raises(
            (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
        ):
            await asyncpg.connect(dsn)
    conn = await asyncpg.connect(embedded.running_dsn(root).replace("/radsched?", "/postgres?"))
    await conn.close()


async def test_postmaster_has_no_secret_and_wants_a_password(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=data_dir, http_listen="127.0.0.1:0", mllp_listen="127.0.0.1:0")
    root = data_dir / "pg"
    async with running(settings):
        pid = postmaster_pid(root)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for value in SECRETS.values():
            assert not any(value.encode() in item for item in environ)
        assert not any(item.startswith(b"RADSCHED_") for item in environ), environ

        uid = os.stat(f"/proc/{pid}").st_uid
        if os.geteuid() == 0:
            assert pwd.getpwuid(uid).pw_name == embedded.SERVER_ACCOUNT
        assert stat.S_IMODE(socket_dir(root).stat().st_mode) == 0o700
        assert stat.S_IMODE((root / embedded.PASSWORD_FILE).stat().st_mode) == 0o600
        await assert_password_required(root)


async def test_a_trust_cluster_from_an_older_radsched_is_switched_to_passwords(
    data_dir: Path,
) -> None:
    root = data_dir / "pg"
    handle = await embedded.start(root)
    # Make it what an older radsched left: no password, trust on the socket, owned by nobody.
    conn = await asyncpg.connect(handle.dsn("postgres"))
    await conn.execute("ALTER ROLE postgres PASSWORD NULL")
    await conn.close()
    (handle.data / "pg_hba.conf").write_text("local all all trust\n")
    await embedded.stop(handle)
    (root / embedded.PASSWORD_FILE).unlink()
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for dirpath, _, files in os.walk(root):
            shutil.chown(dirpath, nobody.pw_uid, nobody.pw_gid)
            for name in files:
                os.chown(Path(dirpath) / name, nobody.pw_uid, nobody.pw_gid)

    handle = await embedded.start(root)
    try:
        await assert_password_required(root)
        if os.geteuid() == 0:
            owner = pwd.getpwuid((root / "data").stat().st_uid).pw_name
            assert owner == embedded.SERVER_ACCOUNT
    finally:
        await embedded.stop(handle)
