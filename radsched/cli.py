"""The ``radsched`` command line. Each sub-command is small; ``run`` starts the daemon under aiorun."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from radsched import __version__
from radsched.errors import RadschedError
from radsched.logs import configure_logging
from radsched.settings import Settings, load_settings
from radsched.systemd import Notifier

log = logging.getLogger("radsched.cli")

Command = Callable[[argparse.Namespace], int]


def _fail(exc: BaseException) -> int:
    print(f"radsched: {exc}", file=sys.stderr)
    return getattr(exc, "exit_code", 1)


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon. SIGTERM/SIGINT: stop accepting, finish in-flight work within the grace, exit 0."""
    import aiorun

    from radsched.daemon import running

    settings = load_settings()
    redactor = configure_logging(settings.log_format)
    exit_code = 0
    stop = asyncio.Event()
    signals = 0

    def on_signal(loop: asyncio.AbstractEventLoop) -> None:
        # aiorun owns the signal handlers (aiohttp installs none: handle_signals=False).
        nonlocal signals
        signals += 1
        if signals == 1:
            loop.call_soon_threadsafe(stop.set)
        else:  # a second signal means "now": skip the grace period
            loop.call_soon_threadsafe(loop.stop)

    async def main() -> None:
        nonlocal exit_code
        loop = asyncio.get_running_loop()
        try:
            async with running(settings, notifier=Notifier(), redactor=redactor):
                settle_heap()
                await stop.wait()
        except RadschedError as exc:
            exit_code = _fail(exc)
        finally:
            loop.stop()

    try:
        aiorun.run(
            main(),
            shutdown_handler=on_signal,
            stop_on_unhandled_errors=True,
            use_uvloop=importlib.util.find_spec("uvloop") is not None,
            timeout_task_shutdown=settings.shutdown_grace_s + 5,
        )
    except Exception as exc:
        traceback.print_exc()
        print(f"radsched: fatal: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return exit_code


def settle_heap() -> None:
    """Once the daemon is up: keep what start-up built out of every later full collection.

    The modules, settings, templates and pools built at start-up live as long as the process, yet
    each full (generation 2) collection walks them all again, with the event loop stopped for it:
    tens of milliseconds at a time on the daemon, a stall every connection waits out. After one
    collection of start-up's garbage, ``gc.freeze`` moves the survivors to a generation the
    collector never walks, so a full collection costs what was allocated since. The daemon's own
    process only: tests run many daemons in one process, and what they freeze is never collected.
    """
    gc.collect()
    gc.freeze()


def run_async(make: Callable[[Settings], Coroutine[Any, Any, int]]) -> int:
    """Run a one-shot command coroutine with settings loaded and logging configured."""
    settings = load_settings()
    configure_logging(settings.log_format, level=logging.WARNING)
    return asyncio.run(make(settings))


def cmd_migrate(args: argparse.Namespace) -> int:
    from radsched.storage.connect import storage
    from radsched.storage.migrate import current_version, migrate

    async def go(settings: Settings) -> int:
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(
                storage(settings, stack, None, owner=False, create=True)
            )
            async with store.db.pool.acquire() as conn:
                applied = await migrate(conn)
                version = await current_version(conn)
        if applied:
            print(f"applied migrations {', '.join(map(str, applied))}; schema at version {version}")
        else:
            print(f"schema up to date at version {version}")
        return 0

    return run_async(go)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radsched",
        description="HL7 v2 / MLLP integration daemon with SMS self-scheduling for radiology.",
    )
    parser.add_argument("--version", action="version", version=f"radsched {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the daemon").set_defaults(func=cmd_run)
    sub.add_parser("migrate", help="apply database migrations and exit").set_defaults(
        func=cmd_migrate
    )
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


# Modules that contribute sub-commands: each has ``register(subparsers) -> None`` and keeps its heavy
# imports inside the command functions so ``radsched --help`` stays fast.
COMMAND_MODULES: tuple[str, ...] = (
    "radsched.commands.modality",
    "radsched.commands.report",
    "radsched.commands.hash_phone",
    "radsched.commands.text",
    "radsched.replay",
    "radsched.simris.cli",
    "radsched.commands.outbox",
    "radsched.commands.purge",
    "radsched.commands.appointment",
    "radsched.commands.requests",
    "radsched.commands.shadow",
    "radsched.commands.admin_user",
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except RadschedError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
