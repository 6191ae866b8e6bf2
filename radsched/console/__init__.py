"""The admin console: a small server-rendered web application on its own listener (``ADMIN_LISTEN``).

``build_console_app(ConsoleDeps(...))`` returns the aiohttp application; everything it needs comes in
through :class:`ConsoleDeps`. See docs/console.md.
"""

from radsched.console.app import ConsoleDeps, OutboxActions
from radsched.console.site import build_console_app

__all__ = ["ConsoleDeps", "OutboxActions", "build_console_app"]
