"""Abuse limits for the public HTTP endpoints: token buckets per caller, and a deadline on slow bodies.

Who is limited, and by what key (docs/security.md, "Rate limits"):

=====================  ==========================================  ==================================
endpoint               bucket key                                  settings
=====================  ==========================================  ==================================
``/api/ris/*``         the API key (a digest of it), once it is   ``RATE_LIMIT_API_PER_S`` / ``_BURST``
                       known to be valid
``/api/orders``        the bearer token (digest), once valid       ``RATE_LIMIT_ORDERS_PER_S`` / ``_BURST``
``POST /sms/inbound``  the sender's phone hash, once the Twilio    ``RATE_LIMIT_SMS_PER_MIN`` / ``_BURST``
                       signature verifies
any of the above       the client IP, charged per 401/403 answer   ``RATE_LIMIT_AUTH_FAILURES_PER_MIN``
                       and checked before a request without a      / ``_BURST``
                       valid credential is handled
=====================  ==========================================  ==================================

A caller's bucket is only ever filled by requests that proved who they are: a forger cannot spend a
patient's or a client's allowance (which would deny them service) and cannot learn from a 429 that
a phone number is in use. Unproven requests are governed by the per-IP failure bucket alone. A
request refused here gets ``429`` with the usual JSON error body and ``Retry-After`` (whole seconds).

The buckets live in this process's memory: with several daemons behind a load balancer each
enforces its own limit (the cluster admits up to N times the rate). That is deliberate: no shared
state to fail, and the limits are about abuse, not billing.

Request bodies on these endpoints are read here, up to the app's ``client_max_size`` and within
``HTTP_BODY_TIMEOUT_S`` (a client trickling its body is answered 408 and disconnected), then handed
back to the stream for the handler to read as usual.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import math
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict
from prometheus_client import CollectorRegistry, Counter

from radsched.privacy import normalise_phone, phone_hash
from radsched.rest.errors import error_response

if TYPE_CHECKING:
    from radsched.secrets_store import Secrets
    from radsched.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], float]

API_PREFIX = "/api/ris/"
ORDERS_PATH = "/api/orders"
SMS_PREFIX = "/sms/"
SMS_INBOUND_PATH = "/sms/inbound"
# Idle buckets beyond this many are forgotten, oldest first (a forgotten bucket is a full one, which
# an idle bucket would have become anyway); this bounds memory whatever the number of callers.
MAX_KEYS = 50_000


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_s`` tokens per second up to ``burst``; ``per_s == 0`` switches the limit off."""

    per_s: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_s > 0


class TokenBuckets:
    """Token buckets keyed by caller, refilled lazily from a monotonic clock. Not thread-safe (one
    event loop uses it, and no method awaits)."""

    def __init__(
        self, rate: Rate, name: str, *, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self.rate = rate
        self.name = name
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens, time of that count). Insertion order is recency: used keys move to the end.
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str) -> float:
        now = self._clock()
        entry = self._buckets.pop(key, None)
        tokens = float(self.rate.burst)
        if entry is not None:
            tokens = min(tokens, entry[0] + (now - entry[1]) * self.rate.per_s)
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            del self._buckets[next(iter(self._buckets))]
        return tokens

    def _wait(self, tokens: float) -> float:
        return (1.0 - tokens) / self.rate.per_s

    def peek(self, key: str) -> float:
        """Seconds until ``key`` has a token (0.0: it has one now). Takes nothing."""
        if not self.rate.enabled:
            return 0.0
        tokens = self._level(key)
        return 0.0 if tokens >= 1.0 else self._wait(tokens)

    def take(self, key: str) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available (none taken)."""
        if not self.rate.enabled:
            return 0.0
        tokens = self._level(key)
        if tokens < 1.0:
            return self._wait(tokens)
        self._buckets[key] = (tokens - 1.0, self._buckets[key][1])
        return 0.0

    def charge(self, key: str) -> None:
        """Take a token whether or not one is there (the level may go below zero, down to -burst)."""
        if self.rate.enabled:
            tokens = self._level(key)
            self._buckets[key] = (max(tokens - 1.0, -self.rate.burst), self._buckets[key][1])

    def refund(self, key: str) -> None:
        """Give back a token taken for a request that turned out not to count."""
        if self.rate.enabled and key in self._buckets:
            tokens, stamp = self._buckets[key]
            self._buckets[key] = (min(tokens + 1.0, float(self.rate.burst)), stamp)


@dataclass(frozen=True, slots=True)
class Limits:
    api: Rate
    orders: Rate
    sms: Rate
    auth_failures: Rate
    body_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            api=Rate(settings.rate_limit_api_per_s, settings.rate_limit_api_burst),
            orders=Rate(settings.rate_limit_orders_per_s, settings.rate_limit_orders_burst),
            sms=Rate(settings.rate_limit_sms_per_min / 60.0, settings.rate_limit_sms_burst),
            auth_failures=Rate(
                settings.rate_limit_auth_failures_per_min / 60.0,
                settings.rate_limit_auth_failures_burst,
            ),
            body_timeout_s=settings.http_body_timeout_s,
        )


def parse_proxies(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``HTTP_TRUSTED_PROXIES``: comma-separated addresses or CIDR networks."""
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()
    )


class _TooSlow(Exception):
    pass


class _TooLarge(Exception):
    pass


class RateLimiter:
    """The aiohttp middleware (``app.middlewares``) enforcing :class:`Limits`."""

    def __init__(
        self,
        limits: Limits,
        *,
        api_keys: Iterable[str],
        order_tokens: Iterable[str],
        hash_key: bytes,
        public_url: str,
        twilio_auth_token: str,
        trusted_proxies: str = "",
        registry: CollectorRegistry | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limits = limits
        self._api_keys = tuple(k.encode() for k in api_keys if k)
        self._order_tokens = tuple(t.encode() for t in order_tokens if t)
        self._hash_key = hash_key
        self._public_url = public_url.rstrip("/")
        self._twilio_token = twilio_auth_token
        self._proxies = parse_proxies(trusted_proxies)
        self.api = TokenBuckets(limits.api, "api_key", clock=clock)
        self.orders = TokenBuckets(limits.orders, "order_token", clock=clock)
        self.sms = TokenBuckets(limits.sms, "sms_phone", clock=clock)
        self.failures = TokenBuckets(limits.auth_failures, "auth_failures", clock=clock)
        # Set by build_app to the application's client_max_size (what request.read() enforces).
        self.max_body = 256 * 1024
        self._refused = Counter(
            "radsched_http_rate_limited",
            "Requests refused with 429, by bucket (api_key, order_token, sms_phone, auth_failures).",
            ["bucket"],
            registry=registry,
        )
        self._slow = Counter(
            "radsched_http_slow_bodies",
            "Requests whose body did not arrive within HTTP_BODY_TIMEOUT_S (answered 408).",
            registry=registry,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        secrets: Secrets,
        hash_key: bytes,
        registry: CollectorRegistry | None,
    ) -> RateLimiter:
        return cls(
            Limits.from_settings(settings),
            api_keys=secrets.api_keys,
            order_tokens=secrets.order_tokens,
            hash_key=hash_key,
            public_url=settings.public_url,
            twilio_auth_token=secrets.twilio_auth_token,
            trusted_proxies=settings.http_trusted_proxies,
            registry=registry,
        )

    # --- the middleware ---------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not (path.startswith((API_PREFIX, SMS_PREFIX)) or path == ORDERS_PATH):
            return await handler(request)
        bucket: TokenBuckets | None = None
        key = ""
        if path.startswith(API_PREFIX):
            bucket, key = self.api, _known(self._api_keys, request.headers.get("X-API-Key", ""))
        elif path == ORDERS_PATH:
            token = _bearer(request.headers.get("Authorization", ""))
            bucket, key = self.orders, _known(self._order_tokens, token)
        if request.can_read_body:
            try:
                raw = await self._read_body(request)
            except _TooSlow:
                self._slow.inc()
                return await _hang_up(
                    request, error_response(408, "request_timeout", "request body too slow")
                )
            except _TooLarge:
                return await _hang_up(
                    request, error_response(413, "payload_too_large", "request body too large")
                )
            if path == SMS_INBOUND_PATH and request.method == "POST":
                bucket, key = self.sms, self._signed_sender(request, raw)
        client = self.client_ip(request)
        if not key:
            # No valid credential: only the failure budget of the address applies.
            wait = self.failures.peek(client)
            if wait > 0:
                return self._too_many(self.failures, wait, "too many failed requests")
        elif bucket is not None:
            wait = bucket.take(key)
            if wait > 0:
                return self._too_many(bucket, wait, "rate limit exceeded")
        response = await handler(request)
        if response.status in (401, 403):
            self.failures.charge(client)
        elif key and bucket is self.sms and response.status >= 400:
            self.sms.refund(key)  # e.g. the engine failed: Twilio's retry must not be refused
        return response

    async def document_responses(self, app: web.Application) -> None:
        """``on_startup``: add the answers this middleware can give to the OpenAPI document.

        Runs once every component has added its paths, so each limited operation lists 429 (and,
        with a request body, 408 and 413) next to its own responses.
        """
        from radsched.rest import openapi

        if openapi.DOCUMENT not in app:
            return
        doc = app[openapi.DOCUMENT]
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        added = {
            "429": {
                "description": "Rate limit exceeded (code rate_limited); retry after Retry-After seconds.",
                "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
                "content": error,
            },
            "408": {
                "description": "Request body too slow (code request_timeout).",
                "content": error,
            },
            "413": {
                "description": "Request body too large (code payload_too_large).",
                "content": error,
            },
        }
        for path, operations in doc["paths"].items():
            if not (path.startswith((API_PREFIX, SMS_PREFIX)) or path == ORDERS_PATH):
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                wanted = ("429", "408", "413") if "requestBody" in operation else ("429",)
                for status in wanted:
                    responses.setdefault(status, added[status])

    def _too_many(self, bucket: TokenBuckets, wait: float, message: str) -> web.Response:
        self._refused.labels(bucket.name).inc()
        retry = max(1, math.ceil(wait))
        return error_response(
            429, "rate_limited", f"{message}; retry after {retry} s", **{"Retry-After": str(retry)}
        )

    # --- helpers ------------------------------------------------------------------------------

    def client_ip(self, request: web.Request) -> str:
        return self.resolve_client(request.remote or "", request.headers.get("X-Forwarded-For", ""))

    def resolve_client(self, remote: str, forwarded_for: str) -> str:
        """The peer address, or behind a trusted proxy the nearest untrusted X-Forwarded-For hop."""
        if not self._proxies or not self._trusted(remote):
            return remote
        hops = [h.strip() for h in forwarded_for.split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._trusted(hop):
                return hop
        return remote

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._proxies)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.max_body
        declared = request.content_length
        if declared is not None and declared > limit:
            raise _TooLarge
        body = bytearray()
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while chunk := await request.content.readany():
                    body += chunk
                    if len(body) > limit:
                        raise _TooLarge
        except TimeoutError:
            raise _TooSlow from None
        # Hand the bytes back so the handler reads the body as if we had never looked. The API is
        # deprecated (aiohttp #3260) but is the one public way to do it; the webhook tests fail
        # loudly if it ever disappears.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            request.content.unread_data(bytes(body))
        return bytes(body)

    def _signed_sender(self, request: web.Request, raw: bytes) -> str:
        """The phone hash of a correctly signed inbound text's sender, else ``""``."""
        if not self._twilio_token or not self.limits.sms.enabled:
            return ""
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            return ""
        try:
            form = MultiDict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return ""
        from twilio.request_validator import RequestValidator

        url = self._public_url + request.raw_path
        if not RequestValidator(self._twilio_token).validate(url, form, signature):
            return ""
        e164 = normalise_phone(form.get("From", ""))
        return phone_hash(self._hash_key, e164) if e164 else ""


async def _hang_up(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response`` now and close the connection at once.

    The rest of the body is still on the wire, or never coming. Returned normally, aiohttp would
    "linger" for up to 10 s reading and discarding it, which a trickling client stretches to the
    full 10 s per connection; sending first and then force-closing skips that.
    """
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _known(candidates: tuple[bytes, ...], supplied: str) -> str:
    """A digest naming ``supplied`` when it is one of ``candidates`` (constant time), else ``""``."""
    if not supplied:
        return ""
    data = supplied.encode("utf-8", "surrogateescape")  # non-UTF-8 header bytes: no match, not 500
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(candidate, data)
    # Buckets are keyed by a digest so that no credential sits in a dict key (heap dumps, debuggers).
    return hashlib.sha256(data).hexdigest()[:32] if found else ""
