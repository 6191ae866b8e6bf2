"""DATA_DIR: created if missing, checked writable, and locked so that one daemon owns it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from radsched.errors import ConfigError, StartupError


class DataDirLock:
    """An exclusive ``flock`` on ``DATA_DIR/radsched.lock``, released when the process exits.

    ``flock`` is released by the kernel even when the daemon is killed with SIGKILL, so a crash never
    leaves a stale lock behind (unlike a PID file).
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "radsched.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartupError(
                f"RADSCHED_DATA_DIR: {self.path.parent} is in use by another radsched "
                f"(pid {holder}); stop it or give this one its own DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def prepare_data_dir(data_dir: Path) -> Path:
    """Create DATA_DIR (0700) if missing and prove it is writable, or raise naming the setting."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"RADSCHED_DATA_DIR: cannot create {data_dir}: {exc.strerror}") from None
    if not data_dir.is_dir():
        raise ConfigError(f"RADSCHED_DATA_DIR: {data_dir} is not a directory")
    probe = data_dir / ".write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"RADSCHED_DATA_DIR: {data_dir} is not writable: {exc.strerror}"
        ) from None
    return data_dir.resolve()
