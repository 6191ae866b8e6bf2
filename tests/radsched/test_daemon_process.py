"""The daemon as systemd runs it: a subprocess, notify socket, SIGTERM, restart on the same DATA_DIR."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.daemonproc import DaemonProcess


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_start_serve_stop_restart_on_embedded_defaults(data_dir: Path) -> None:
    daemon = DaemonProcess(data_dir).start()
    try:
        assert "READY=1" in daemon.notifications[-1]
        assert get(daemon.url("/healthz")) == (200, b'{"status": "ok"}')
        status, body = get(daemon.url("/readyz"))
        assert status == 200 and json.loads(body)["checks"]["database"] == "ok"
        status, metrics = get(daemon.url("/metrics"))
        assert status == 200
        assert b"radsched_build_info{" in metrics
        assert b"process_resident_memory_bytes" in metrics
        assert b'radsched_http_request_seconds_count{method="GET",route="/readyz"' in metrics
        first_log = daemon.log()
        assert "applied migration" in first_log
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()
    assert any("STOPPING=1" in n for n in daemon.notifications) or code == 0

    # Same DATA_DIR: the cluster and secrets are reused, no migration is applied again.
    secrets_before = {p.name: p.read_text() for p in (data_dir / "secrets").iterdir()}
    again = DaemonProcess(data_dir).start()
    try:
        assert get(again.url("/readyz"))[0] == 200
        assert "applied migration" not in again.log()
    finally:
        assert again.stop() == 0
    assert {p.name: p.read_text() for p in (data_dir / "secrets").iterdir()} == secrets_before


def test_second_daemon_on_same_data_dir_is_refused(data_dir: Path) -> None:
    first = DaemonProcess(data_dir).start()
    try:
        second = DaemonProcess(data_dir).start(wait_ready=False)
        assert second.wait(60) != 0
        assert "is in use by another radsched" in second.log()
        assert "Traceback" not in second.log()
        second.close()
    finally:
        assert first.stop() == 0


def test_port_in_use_is_one_clear_line(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = DaemonProcess(data_dir, env={"RADSCHED_HTTP_LISTEN": f"127.0.0.1:{port}"})
        daemon.start(wait_ready=False)
        assert daemon.wait(90) != 0
        daemon.close()
    assert f"RADSCHED_HTTP_LISTEN: 127.0.0.1:{port} is already in use" in daemon.log()
    assert "Traceback" not in daemon.log()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RADSCHED_CONFIG": "/nonexistent/radsched.toml"}, "RADSCHED_CONFIG: file"),
        ({"RADSCHED_BOGUS": "1"}, "RADSCHED_BOGUS: unknown setting"),
        (
            {
                "RADSCHED_DATABASE_URL": "postgresql://radsched:pw-not-logged@127.0.0.1:1/radsched",
                "RADSCHED_PHONE_HASH_KEY": "a" * 64,
                "RADSCHED_PHI_KEY": "b" * 64,
            },
            "RADSCHED_DATABASE_URL: cannot connect to the database",
        ),
        ({"RADSCHED_DATA_DIR": "/proc/radsched"}, "RADSCHED_DATA_DIR: cannot create"),
    ],
)
def test_bad_start_conditions_exit_non_zero_with_one_line(
    data_dir: Path, env: dict[str, str], expected: str
) -> None:
    daemon = DaemonProcess(data_dir, env=env).start(wait_ready=False)
    code = daemon.wait(60)
    daemon.close()
    out = daemon.log()
    assert code != 0
    assert expected in out, out
    assert "Traceback" not in out
    assert "pw-not-logged" not in out
