"""``EMR_ROUTES``: which EMR(s) receive the SIU of an appointment, by facility.

Grammar (whitespace around items is ignored; routes are separated by ``,`` or newlines)::

    EMR_ROUTES = ROUTE *( "," ROUTE )
    ROUTE      = FACILITY "=" HOST ":" PORT *( ";" OPTION )
    OPTION     = DIALECT                 ; ch10-2.5.1 (SIU v2.5.1, TQ1) or qie-2.3 (SIU v2.3, SCH-11)
               | "receiver=" APP "^" FAC  ; MSH-5 / MSH-6 of what this EMR receives
               | "name=" NAME            ; destination name (default HOST:PORT)
               | "version=" VERSION      ; SIU version this EMR gets, 2.3-2.8 (default: the dialect's);
                                         ; relayed SIUs are converted to it field by field
               | "tls"                   ; MLLP over TLS 1.2+; needs ca=
               | "ca=" FILE              ; the CA that signed the EMR's certificate (implies tls)
               | "cert=" FILE            ; our client certificate, for mutual TLS (with key=)
               | "key=" FILE             ; its private key
               | "server_name=" NAME     ; the name the EMR's certificate carries (default HOST)

``FACILITY`` is matched exactly against the order's facility (``parse_order``'s, MSH-4 by default) or,
in relay mode, MSH-4 of the SIU; ``*`` is the default for facilities without a route of their own. A
facility may appear several times: the SIU fans out to every destination listed for it. Examples::

    *=emr.example.org:6661
    HOSP=epic.internal:6661;ch10-2.5.1;receiver=EPIC^HOSP, HOSP=archive.internal:7000;qie-2.3, *=athena:6661
    *=10.20.0.9:6661;tls;ca=/etc/radsched/emr-ca.pem;cert=/etc/radsched/client.pem;key=/etc/radsched/client.key;server_name=emr.example.org

A *destination* is one MLLP peer and one FIFO queue, named ``HOST:PORT`` unless ``name=`` says
otherwise. Rows in ``hl7_outbox`` carry the destination name, so naming a destination lets its address
change without orphaning queued messages.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from channels import Party
from channels.siu_convert import SIU_VERSIONS
from mllp.tls import client_context
from radsched.errors import ConfigError
from radsched.settings import DIALECTS, HostPort

SETTING = "RADSCHED_EMR_ROUTES"
DEFAULT_FACILITY = "*"
SINK_DESTINATION = "sink"
UNROUTED = "unrouted"
"""Destination name of dead letters that had no route (never drained; see docs/operations.md)."""

_SIU_VERSION = {"ch10-2.5.1": "2.5.1", "qie-2.3": "2.3"}
# Values that go into MSH-5/6 or name a destination: no HL7 delimiters, no spaces, nothing odd in logs.
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,180}")
_TLS_OPTIONS = ("ca", "cert", "key", "server_name")
_FACILITY = re.compile(r"\*|[^\s=,;^|~\\&]{1,180}")


@dataclass(frozen=True, slots=True)
class RouteTls:
    """TLS to one destination: files are checked when its sender starts (``mllp.tls``)."""

    ca: str
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """One EMR MLLP endpoint with its own FIFO queue and sender."""

    name: str
    address: HostPort
    tls: RouteTls | None = None

    @property
    def server_name(self) -> str:
        """The name the peer's certificate must carry."""
        return (self.tls and self.tls.server_name) or self.address.host


@dataclass(frozen=True, slots=True)
class Route:
    facility: str
    destination: Destination
    dialect: str
    receiver: Party
    version: str = ""
    """``version=`` when given: the SIU version this EMR gets (relayed SIUs are converted to it)."""

    @property
    def siu_version(self) -> str:
        return self.version or _SIU_VERSION[self.dialect]


@dataclass(frozen=True, slots=True)
class Routes:
    routes: tuple[Route, ...]

    def for_facility(self, facility: str | None) -> tuple[Route, ...]:
        """The routes for ``facility``; the ``*`` routes when it has none; ``()`` when unrouted."""
        wanted = facility or DEFAULT_FACILITY
        exact = tuple(r for r in self.routes if r.facility == wanted)
        if exact:
            return exact
        return tuple(r for r in self.routes if r.facility == DEFAULT_FACILITY)

    @property
    def destinations(self) -> tuple[Destination, ...]:
        seen: dict[str, Destination] = {}
        for route in self.routes:
            seen.setdefault(route.destination.name, route.destination)
        return tuple(seen.values())


def tls_context(destination: Destination) -> ssl.SSLContext | None:
    """The client context of a destination's ``tls`` options; ``ConfigError`` naming the route
    when a file does not load, so a daemon refuses to start rather than queue SIUs it cannot send."""
    spec = destination.tls
    if spec is None:
        return None
    try:
        return client_context(spec.ca, cert=spec.cert, key=spec.key)
    except ValueError as exc:
        raise _fail(f"destination {destination.name!r}: {exc}") from None


def sink_routes(address: HostPort) -> Routes:
    """Every facility to the in-process EMR sink (what ``make run`` uses when EMR_ROUTES is unset)."""
    dest = Destination(SINK_DESTINATION, address)
    return Routes((Route(DEFAULT_FACILITY, dest, "ch10-2.5.1", Party("EMRSINK", "RADSCHED")),))


def _fail(problem: str) -> ConfigError:
    return ConfigError(f"{SETTING}: {problem} (see docs/operations.md, 'Routing')")


def _parse_route(text: str) -> Route:
    facility, sep, rest = text.partition("=")
    facility = facility.strip()
    if not sep or not rest.strip():
        raise _fail(f"route {text!r} must look like FACILITY=HOST:PORT[;DIALECT]")
    if not _FACILITY.fullmatch(facility):
        raise _fail(f"route {text!r} has an invalid facility {facility!r}")
    address_text, *options = (part.strip() for part in rest.split(";"))
    try:
        address = HostPort.parse(address_text, setting=SETTING)
    except ValueError as exc:
        raise _fail(f"route {text!r}: {exc}") from None
    if address.port == 0:
        raise _fail(f"route {text!r}: port 0 is not an EMR address")
    dialect = "ch10-2.5.1"
    name = str(address)
    receiver = Party("EMR", "EMR" if facility == DEFAULT_FACILITY else facility)
    version = ""
    tls: dict[str, str] = {}
    want_tls = False
    for option in options:
        key, eq, value = option.partition("=")
        if not eq and option in DIALECTS:
            dialect = option
        elif option == "tls":
            want_tls = True
        elif key in _TLS_OPTIONS and eq:
            if not value or (key == "server_name" and not _TOKEN.fullmatch(value)):
                raise _fail(f"route {text!r}: {key}= needs a value")
            tls[key] = value
        elif key == "receiver" and eq:
            app, caret, fac = value.partition("^")
            if not (caret and _TOKEN.fullmatch(app) and _TOKEN.fullmatch(fac)):
                raise _fail(f"route {text!r}: receiver must look like APP^FACILITY")
            receiver = Party(app, fac)
        elif key == "version" and eq:
            if value not in SIU_VERSIONS:
                raise _fail(f"route {text!r}: version must be one of {', '.join(SIU_VERSIONS)}")
            version = value
        elif key == "name" and eq:
            if not _TOKEN.fullmatch(value):
                raise _fail(f"route {text!r}: name may use letters, digits, '.', '_' and '-'")
            name = value
        elif option:
            known = ", ".join(DIALECTS)
            raise _fail(
                f"route {text!r}: unknown option {option!r} (dialects: {known}; "
                "or receiver=APP^FACILITY, name=NAME, version=2.3-2.8, "
                "tls, ca=FILE, cert=FILE, key=FILE, server_name=NAME)"
            )
    if name in (SINK_DESTINATION, UNROUTED):
        raise _fail(f"route {text!r}: destination name {name!r} is reserved")
    return Route(
        facility,
        Destination(name, address, _route_tls(text, want_tls, tls)),
        dialect,
        receiver,
        version,
    )


def _route_tls(text: str, wanted: bool, options: dict[str, str]) -> RouteTls | None:
    if not (wanted or options):
        return None
    # Never the system trust store: an EMR's interface is signed by the hospital's own CA, and a
    # public CA would let anyone with a certificate for the name receive PHI.
    if "ca" not in options:
        raise _fail(f"route {text!r}: TLS needs ca=FILE (the CA that signed the EMR's certificate)")
    if ("cert" in options) != ("key" in options):
        raise _fail(f"route {text!r}: cert= and key= go together")
    return RouteTls(
        options["ca"], options.get("cert"), options.get("key"), options.get("server_name")
    )


def parse_routes(text: str) -> Routes:
    """Parse the setting; raise :class:`ConfigError` naming ``RADSCHED_EMR_ROUTES`` on any mistake."""
    items = [item.strip() for item in re.split(r"[,\n]", text) if item.strip()]
    if not items:
        raise _fail("is set but lists no route")
    routes = tuple(_parse_route(item) for item in items)
    _check_consistent(routes)
    return Routes(routes)


def _check_consistent(routes: Iterable[Route]) -> None:
    by_name: dict[str, Destination] = {}
    pairs: set[tuple[str, str]] = set()
    for route in routes:
        dest = route.destination
        known = by_name.setdefault(dest.name, dest)
        if known.address != dest.address:
            raise _fail(
                f"destination {dest.name!r} names two addresses ({known.address}, {dest.address})"
            )
        if known.tls != dest.tls:
            raise _fail(f"destination {dest.name!r} is given two different TLS settings")
        pair = (route.facility, dest.name)
        if pair in pairs:
            raise _fail(f"facility {route.facility!r} is routed to {dest.name!r} twice")
        pairs.add(pair)
