"""``radsched sim-ris``: run the simulated RIS on its own (tests, rehearsals, benchmarks).

Prints one line ``sim-ris listening mllp=HOST:PORT [control=HOST:PORT]`` on stdout once bound (port 0 picks a
free port), then serves until SIGTERM/SIGINT. Dialect site overrides come from the ``[dialect]`` table of
the ``RADSCHED_CONFIG`` file, like the daemon's, so both sides agree on field placements.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path

DESCRIPTION = "run a simulated RIS (both dialects) over MLLP"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("sim-ris", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("--listen", default="127.0.0.1:2576", metavar="HOST:PORT", help="MLLP address")
    p.add_argument(
        "--calendar", type=Path, metavar="FILE", help="TOML calendar (docs/integration.md)"
    )
    p.add_argument(
        "--dialect",
        choices=("ch10-2.5.1", "qie-2.3"),
        help="accept only this dialect's message types, with the [dialect] overrides of "
        "RADSCHED_CONFIG (default: both dialects, no overrides)",
    )
    p.add_argument("--timezone", default="America/New_York", help="default calendar's time zone")
    p.add_argument(
        "--control", metavar="HOST:PORT", help="HTTP control channel for faults and stats"
    )
    p.add_argument(
        "--notify",
        metavar="HOST:PORT",
        help="where staff-side changes (control channel /appointments/...) send their SIU: "
        "radsched's MLLP_LISTEN",
    )
    p.add_argument("--delay", type=float, default=0.0, metavar="S", help="answer S seconds late")
    p.add_argument(
        "--stall", action="store_true", help="hold every reply until the fault is cleared"
    )
    p.add_argument("--drop", action="store_true", help="process, then close without replying")
    p.add_argument("--nak", choices=("AE", "AR"), help="answer every new request with this NAK")
    p.add_argument("--garbage", action="store_true", help="answer with non-HL7 bytes")
    p.add_argument("--wrong-id", action="store_true", help="acknowledge another control id")
    p.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="serve MLLP over TLS with this cert"
    )
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="private key of --tls-cert")
    p.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="require client certificates from this CA"
    )
    p.add_argument("--cpu", type=int, metavar="N", help="pin the process to CPU N (benchmarks)")
    p.set_defaults(func=cmd_sim_ris)


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A server context for --tls-cert/--tls-key; with --tls-ca, client certificates are required."""
    if args.tls_cert is None:
        if args.tls_key or args.tls_ca:
            raise ValueError("--tls-key and --tls-ca need --tls-cert")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_ca is not None:
        context.load_verify_locations(args.tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def cmd_sim_ris(args: argparse.Namespace) -> int:
    import logging
    import os
    from zoneinfo import ZoneInfo

    from aiohttp import web

    from radsched.errors import ConfigError
    from radsched.logs import configure_logging
    from radsched.settings import HostPort, toml_sections
    from radsched.simris.calendar import CalendarError, default_calendar, load_calendar
    from radsched.simris.control import control_app
    from radsched.simris.server import DIALECT_NAMES, FaultError, Faults, SimRis

    configure_logging(None, level=logging.WARNING)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        listen = HostPort.parse(args.listen, setting="--listen")
        control = HostPort.parse(args.control, setting="--control") if args.control else None
        notify = HostPort.parse(args.notify, setting="--notify") if args.notify else None
        calendar = (
            load_calendar(args.calendar)
            if args.calendar
            else default_calendar(tz=ZoneInfo(args.timezone))
        )
        faults = Faults()
        faults.update(
            {
                "delay": args.delay,
                "stall": args.stall,
                "drop": args.drop,
                "nak": args.nak or "",
                "garbage": args.garbage,
                "wrong_id": args.wrong_id,
            }
        )
        # The site's [dialect] table belongs to one dialect: the one chosen with --dialect.
        table = toml_sections().get("dialect", {})
        overrides = {args.dialect: table} if args.dialect and table else {}
        context = _tls(args)
        if table and not args.dialect:
            print(
                "radsched sim-ris: [dialect] overrides ignored without --dialect", file=sys.stderr
            )
    except (ValueError, OSError, ssl.SSLError, CalendarError, FaultError, ConfigError) as exc:
        print(f"radsched sim-ris: {exc}", file=sys.stderr)
        return 2

    async def serve() -> int:
        sim = SimRis(
            calendar,
            dialects=(args.dialect,) if args.dialect else DIALECT_NAMES,
            overrides=overrides,
            faults=faults,
            notify=(notify.host, notify.port) if notify else None,
        )
        if faults.stall:
            sim.set_faults(stall=True)
        await sim.start(listen.host, listen.port, ssl=context)
        runner: web.AppRunner | None = None
        line = f"sim-ris listening mllp={HostPort(sim.host, sim.port)}"
        if control is not None:
            runner = web.AppRunner(control_app(sim), access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, control.host, control.port)
            await site.start()
            bound = runner.addresses[0]
            line += f" control={HostPort(str(bound[0]), int(bound[1]))}"
        print(line, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        if runner is not None:
            await runner.cleanup()
        await sim.aclose()
        return 0

    return asyncio.run(serve())
