"""Run ``radsched`` as a real subprocess and talk to it the way systemd would.

The test owns a ``NOTIFY_SOCKET``; the daemon binds port 0 and reports its bound addresses in
``STATUS=`` before ``READY=1``, so no test ever guesses a free port or sleeps waiting for start-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 90.0


@dataclass
class DaemonProcess:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ("run",)
    #: Interpreter options before ``-m radsched`` (the benchmarks' profiler: ``-m cProfile -o F``).
    python_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    notifications: list[str] = field(default_factory=list)
    log_path: Path | None = None
    _sock: socket.socket | None = None

    def start(self, *, wait_ready: bool = True) -> DaemonProcess:
        sock_dir = Path(tempfile.mkdtemp(prefix="rs-notify-"))
        sock_path = sock_dir / "notify"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(sock_path))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RADSCHED_") or k == "RADSCHED_TEST_DATABASE_URL"
        }
        env.pop("RADSCHED_TEST_DATABASE_URL", None)
        # A test runner under systemd keeps its own credentials to itself.
        env.pop("CREDENTIALS_DIRECTORY", None)
        env.update(
            {
                "RADSCHED_DATA_DIR": str(self.data_dir),
                "RADSCHED_HTTP_LISTEN": "127.0.0.1:0",
                "RADSCHED_ADMIN_LISTEN": "127.0.0.1:0",
                "RADSCHED_MLLP_LISTEN": "127.0.0.1:0",
                "RADSCHED_LOG_FORMAT": "json",
                "NOTIFY_SOCKET": str(sock_path),
            }
        )
        env.update(self.env)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-daemon-{time.time_ns()}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *self.python_args, "-m", "radsched", *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait_ready:
            self.wait_for("READY=1", READY_TIMEOUT)
        return self

    def wait_for(self, wanted: str, timeout: float) -> str:
        """Read notify datagrams until one contains ``wanted``; fail if the daemon exits first."""
        assert self._sock is not None and self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {wanted!r} within {timeout}s; log:\n{self.log()}")
            self._sock.settimeout(min(remaining, 0.5))
            try:
                datagram = self._sock.recv(65536).decode()
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"daemon exited {self.proc.returncode} before {wanted!r}; log:\n{self.log()}"
                    ) from None
                continue
            self.notifications.append(datagram)
            for line in datagram.splitlines():
                if line.startswith("STATUS=listening"):
                    for item in line.split()[1:]:
                        name, _, addr = item.partition("=")
                        host, _, port = addr.rpartition(":")
                        self.addresses[name] = (host, int(port))
            if wanted in datagram:
                return datagram

    def url(self, path: str = "") -> str:
        host, port = self.addresses["http"]
        return f"http://{host}:{port}{path}"

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        finally:
            self.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""
