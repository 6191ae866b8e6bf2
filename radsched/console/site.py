"""The console's aiohttp application: middlewares, templates, routes of every page, static files.

Apart from :mod:`radsched.console.app` (the request helpers every view uses) so the views import the
helpers and this module imports the views, in one direction.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from radsched.console import app as core
from radsched.console import auth_views, pages, report_views, request_views
from radsched.console.app import ConsoleDeps
from radsched.console.limiter import LoginLimiter
from radsched.console.session import CookieCodec

__all__ = ["build_console_app", "static_dir"]


def static_dir() -> Path:
    return Path(str(resources.files("radsched.console").joinpath("static")))


def build_console_app(d: ConsoleDeps) -> web.Application:
    app = web.Application(
        middlewares=[core.headers_middleware, core.session_middleware], client_max_size=64 * 1024
    )
    app[core.DEPS] = d
    app[core.CODEC] = CookieCodec(d.cookie_key)
    app[core.LIMITER] = d.limiter or LoginLimiter(d.clock)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("radsched.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env = aiohttp_jinja2.get_env(app)
    env.filters["ago"] = lambda when: _ago(d.clock(), when)
    env.filters["stamp"] = lambda when: f"{when:%Y-%m-%d %H:%M:%S}Z" if when else "—"
    auth_views.add_routes(app)
    pages.add_routes(app)
    report_views.add_routes(app)
    request_views.add_routes(app)
    app.router.add_static("/static/", static_dir(), name="static", append_version=True)
    return app


def _ago(now: datetime, when: datetime | None) -> str:
    if when is None:
        return "—"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
