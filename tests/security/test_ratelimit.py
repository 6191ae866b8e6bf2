"""Rate limits: token buckets per API key, per bearer token, per phone hash, and per client IP for
unauthenticated failures; clear 429s (JSON error body, ``Retry-After``), configurable, off at 0.

The bucket arithmetic is tested with an injected clock; the wiring on an in-process daemon with
bursts small enough that refill never matters within a test (a rate of one token per ~17 minutes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from radsched.rest.ratelimit import Limits, Rate, RateLimiter, TokenBuckets
from tests.security.conftest import (
    ORDER_TOKEN,
    OTHER_API_KEY,
    PUBLIC_URL,
    Secured,
    SecuredFactory,
)
from tests.twilio_double import inbound_form, sign

SLOW = 0.001  # tokens per second: effectively no refill during a test


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the buckets -------------------------------------------------------------------------------


def test_bucket_grants_its_burst_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(Rate(per_s=2.0, burst=3), "t", clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0, "another key has its own bucket"
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 3600
    assert [buckets.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0], "refill stops at burst"


def test_charge_refund_and_peek() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(Rate(per_s=1.0, burst=2), "t", clock=clock)
    assert buckets.peek("ip") == 0.0
    for _ in range(5):
        buckets.charge("ip")
    # Charging goes below zero (down to -burst): a hammering client waits longer than one token.
    assert buckets.peek("ip") == pytest.approx(3.0)
    buckets.refund("ip")
    assert buckets.peek("ip") == pytest.approx(2.0)
    assert buckets.peek("ip") == pytest.approx(2.0), "peek takes nothing"


def test_rate_zero_switches_the_limit_off() -> None:
    buckets = TokenBuckets(Rate(per_s=0, burst=1), "t")
    assert all(buckets.take("k") == 0.0 for _ in range(1000))
    assert len(buckets) == 0


def test_memory_is_bounded_whatever_the_number_of_callers() -> None:
    buckets = TokenBuckets(Rate(per_s=1.0, burst=1), "t", max_keys=100)
    for n in range(10_000):
        buckets.charge(f"caller-{n}")
    assert len(buckets) == 100


def _limiter(proxies: str) -> RateLimiter:
    rate = Rate(1.0, 1)
    return RateLimiter(
        Limits(rate, rate, rate, rate),
        api_keys=(),
        order_tokens=(),
        hash_key=b"k" * 32,
        public_url=PUBLIC_URL,
        twilio_auth_token="",
        trusted_proxies=proxies,
    )


@pytest.mark.parametrize(
    ("proxies", "peer", "forwarded", "expected"),
    [
        ("", "127.0.0.1", "203.0.113.9", "127.0.0.1"),  # no trusted proxy: the header is ignored
        ("127.0.0.1", "127.0.0.1", "203.0.113.9", "203.0.113.9"),
        # A client cannot pick its own address by prepending hops: the nearest untrusted one counts.
        ("127.0.0.1", "127.0.0.1", "1.2.3.4, 203.0.113.9", "203.0.113.9"),
        ("127.0.0.1,10.0.0.0/8", "127.0.0.1", "203.0.113.9, 10.1.2.3", "203.0.113.9"),
        ("127.0.0.1", "198.51.100.7", "203.0.113.9", "198.51.100.7"),  # not from the proxy
    ],
)
def test_client_address_behind_trusted_proxies(
    proxies: str, peer: str, forwarded: str, expected: str
) -> None:
    assert _limiter(proxies).resolve_client(peer, forwarded) == expected


# --- on a running daemon ----------------------------------------------------------------------


def assert_429(status: int, headers: Mapping[str, str], body: Any) -> None:
    assert status == 429
    assert body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    assert "X-Request-Id" in headers


async def test_api_key_bucket(secured: SecuredFactory) -> None:
    async with secured(rate_limit_api_per_s=SLOW, rate_limit_api_burst=3) as s:
        for _ in range(3):
            status, _, _ = await s.get("/api/ris/locations", modality="CR")
            assert status == 200
        assert_429(*await s.get("/api/ris/locations", modality="CR"))
        # Another key is another client: unaffected.
        status, _, _ = await s.get("/api/ris/locations", key=OTHER_API_KEY, modality="CR")
        assert status == 200
        refused = s.daemon.metrics.registry.get_sample_value(
            "radsched_http_rate_limited_total", {"bucket": "api_key"}
        )
        assert refused == 1.0


async def test_bearer_token_bucket(secured: SecuredFactory) -> None:
    async with secured(rate_limit_orders_per_s=SLOW, rate_limit_orders_burst=2) as s:
        for n in range(2):
            status, _ = await s.order(
                {"order_id": f"RL{n}", "mrn": "M1", "phone": "+12175550101", "modality": "CR"}
            )
            assert status == 202
        status, headers, body = await s.post(
            "/api/orders",
            json={"order_id": "RL9", "mrn": "M1", "phone": "+12175550101", "modality": "CR"},
            headers={"Authorization": f"Bearer {ORDER_TOKEN}"},
        )
        assert_429(status, headers, body)


async def test_unauthenticated_failures_are_limited_per_address(secured: SecuredFactory) -> None:
    async with secured(
        rate_limit_auth_failures_per_min=SLOW * 60, rate_limit_auth_failures_burst=3
    ) as s:
        for n in range(3):
            status, _, _ = await s.get("/api/ris/locations", key=f"guess-{n}", modality="CR")
            assert status == 401
        # The address has used its failure budget: every unproven request is refused unhandled,
        # whatever endpoint or credential it tries next.
        assert_429(*await s.get("/api/ris/locations", key="guess-4", modality="CR"))
        assert_429(*await s.get("/api/ris/locations", key=None, modality="CR"))
        assert_429(*await s.post("/api/orders", json={}, headers={"Authorization": "Bearer x"}))
        assert_429(*await s.post("/sms/inbound", data={"MessageSid": "SM" + "0" * 32}))
        # A valid credential is not refused for its address's failures (a shared NAT, a proxy).
        status, _, _ = await s.get("/api/ris/locations", modality="CR")
        assert status == 200


async def test_proxy_clients_are_told_apart_by_forwarded_address(secured: SecuredFactory) -> None:
    async with secured(
        rate_limit_auth_failures_per_min=SLOW * 60,
        rate_limit_auth_failures_burst=1,
        http_trusted_proxies="127.0.0.1",
    ) as s:
        attacker = {"X-Forwarded-For": "203.0.113.66"}
        assert (await s.get("/api/ris/locations", key="x", headers=attacker, modality="CR"))[
            0
        ] == 401
        assert_429(*await s.get("/api/ris/locations", key="y", headers=attacker, modality="CR"))
        other = {"X-Forwarded-For": "198.51.100.20"}
        assert (await s.get("/api/ris/locations", key="z", headers=other, modality="CR"))[0] == 401


async def _signed_inbound(s: Secured, phone: str, body: str) -> tuple[int, Mapping[str, str], Any]:
    form = inbound_form(s.twilio.account_sid, from_=phone, body=body, to="+15005550006")
    signature = sign(s.twilio.auth_token, PUBLIC_URL + "/sms/inbound", form)
    return await s.post("/sms/inbound", data=form, headers={"X-Twilio-Signature": signature})


async def test_inbound_texts_are_limited_per_phone_and_forgers_spend_nothing(
    secured: SecuredFactory,
) -> None:
    async with secured(
        rate_limit_sms_per_min=SLOW * 60,
        rate_limit_sms_burst=2,
        rate_limit_auth_failures_per_min=SLOW * 60,
        rate_limit_auth_failures_burst=1000,
    ) as s:
        patient, other = "+12175550111", "+12175550122"
        # Forged webhooks naming the patient's number: refused 403, and they use none of the
        # patient's allowance (else a forger could silence a real patient).
        for _ in range(5):
            form = inbound_form(s.twilio.account_sid, from_=patient, body="STOP", to="+1500")
            forged = sign("not-the-token", PUBLIC_URL + "/sms/inbound", form)
            status, _, _ = await s.post(
                "/sms/inbound", data=form, headers={"X-Twilio-Signature": forged}
            )
            assert status == 403
        for body in ("hello", "HELP"):
            assert (await _signed_inbound(s, patient, body))[0] == 200
        assert_429(*await _signed_inbound(s, patient, "again"))
        assert (await _signed_inbound(s, other, "hello"))[0] == 200


async def test_limits_are_documented_in_the_openapi_document(secured: SecuredFactory) -> None:
    async with secured() as s:
        status, _, doc = await s.get("/api/openapi.json", key=None)
    assert status == 200
    for path in ("/api/ris/locations", "/api/ris/book-appointment", "/api/orders", "/sms/inbound"):
        for operation in doc["paths"][path].values():
            assert "429" in operation["responses"], path
    assert "408" in doc["paths"]["/api/ris/book-appointment"]["post"]["responses"]
    assert "429" not in doc["paths"]["/healthz"]["get"]["responses"]


async def test_zero_switches_limits_off(secured: SecuredFactory) -> None:
    async with secured(rate_limit_api_per_s=0, rate_limit_api_burst=1) as s:
        for _ in range(30):
            assert (await s.get("/api/ris/locations", modality="CR"))[0] == 200


def test_bad_trusted_proxy_setting_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from radsched.errors import ConfigError
    from radsched.settings import load_settings

    monkeypatch.setenv("RADSCHED_HTTP_TRUSTED_PROXIES", "10.0.0.0/8,nginx")
    with pytest.raises(ConfigError, match="RADSCHED_HTTP_TRUSTED_PROXIES"):
        load_settings()
