"""Errors the daemon reports to an operator as one clear line."""

from __future__ import annotations

from pathlib import Path


class RadschedError(Exception):
    """A problem an operator can fix; printed as one line, never only a traceback."""

    exit_code = 1


class ConfigError(RadschedError):
    """A setting is missing, malformed or inconsistent. The message names the setting."""

    exit_code = 2


class NoDaemonData(ConfigError):
    """An operator command found no daemon's data (database, generated secrets) in DATA_DIR.

    Such commands read or act on an existing daemon's data; they never create DATA_DIR, a database or
    secrets, which would silently be someone else's (a new cluster, new keys) rather than the daemon's.
    """

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            f"no daemon data in {data_dir.absolute()} "
            "(set RADSCHED_DATA_DIR or run from the daemon's directory)"
        )


class StartupError(RadschedError):
    """A resource could not be started (port in use, database unreachable, DATA_DIR locked)."""

    exit_code = 1
