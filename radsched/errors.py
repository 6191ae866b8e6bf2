"""Errors the daemon reports to an operator as one clear line."""

from __future__ import annotations


class RadschedError(Exception):
    """A problem an operator can fix; printed as one line, never only a traceback."""

    exit_code = 1


class ConfigError(RadschedError):
    """A setting is missing, malformed or inconsistent. The message names the setting."""

    exit_code = 2


class StartupError(RadschedError):
    """A resource could not be started (port in use, database unreachable, DATA_DIR locked)."""

    exit_code = 1
