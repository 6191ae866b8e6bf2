"""Logins, one-time passwords, sessions, timeouts, CSRF, rate limits and roles, through real HTTP on
loopback against the console application and a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp.test_utils import TestClient

from radsched.console.limiter import LoginLimiter
from radsched.console.passwords import (
    PasswordRejected,
    check_new_password,
    hash_password,
    verify_password,
)
from radsched.console.session import (
    ABSOLUTE_TIMEOUT_S,
    COOKIE_NAME,
    IDLE_TIMEOUT_S,
    CookieCodec,
    SessionState,
    derive_cookie_key,
)
from radsched.modality import list_modalities
from radsched.settings import Settings
from radsched.storage.db import Database
from tests.console.helpers import (
    PASSWORD,
    Clock,
    csrf_of,
    deps_for,
    login,
    make_user,
    post_form,
    start_client,
)

Client = TestClient[object, object]


async def audit_actions(db: Database) -> list[tuple[str, str]]:
    async with db.transaction("test.audit") as conn:
        rows = await conn.fetch("SELECT actor, action FROM console_audit ORDER BY id")
    return [(r["actor"], r["action"]) for r in rows]


# --- units -------------------------------------------------------------------------------------


def test_argon2id_hash_verifies_and_rejects() -> None:
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, PASSWORD)
    assert not verify_password(hashed, PASSWORD + "x")
    assert not verify_password(None, PASSWORD)  # unknown user: same work, always False
    assert not verify_password("not a hash", PASSWORD)


def test_password_rules() -> None:
    check_new_password("alice", "a long enough one")
    for bad in ("short", "alice"):
        try:
            check_new_password("alice", bad if bad != "alice" else "ALICE".ljust(12, " "))
        except PasswordRejected:
            continue
        raise AssertionError(bad)


def test_cookie_is_sealed_and_times_out() -> None:
    codec = CookieCodec(derive_cookie_key("k" * 64))
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    state = SessionState.logged_in(now)
    text = codec.encode(state)
    assert codec.decode(text) == state
    assert state.session_id not in text and state.csrf not in text
    tampered = text[:-4] + ("AAAA" if text[-4:] != "AAAA" else "BBBB")
    assert codec.decode(tampered) is None
    assert CookieCodec(derive_cookie_key("other")).decode(text) is None
    later = datetime.fromtimestamp(now.timestamp() + IDLE_TIMEOUT_S + 1, UTC)
    assert state.expiry(later) == "idle"
    kept = state
    stamp = now.timestamp()
    while stamp < now.timestamp() + ABSOLUTE_TIMEOUT_S:
        stamp += IDLE_TIMEOUT_S - 60
        moment = datetime.fromtimestamp(stamp, UTC)
        if kept.expiry(moment):
            break
        kept = kept.seen(moment)
    assert kept.expiry(datetime.fromtimestamp(stamp, UTC)) == "absolute"


def test_limiter_counts_failures_per_user_and_address() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(5):
        assert limiter.wait_s("alice", "10.0.0.1") == 0
        limiter.failed("alice", "10.0.0.1")
    assert limiter.wait_s("alice", "10.0.0.2") > 0  # per name, whatever the address
    assert limiter.wait_s("bob", "10.0.0.1") == 0
    clock.advance(minutes=3)
    assert limiter.wait_s("alice", "10.0.0.1") == 0
    for n in range(20):
        limiter.failed(f"user{n}", "10.0.0.9")
    assert limiter.wait_s("someone", "10.0.0.9") > 0  # per address, whatever the name


# --- handlers ----------------------------------------------------------------------------------


async def test_anonymous_visitor_is_sent_to_login(client: Client) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    page = await client.get("/login")
    assert page.status == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    cookie = page.cookies[COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]


async def test_cookie_is_secure_behind_https(client: Client) -> None:
    page = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert page.cookies[COOKIE_NAME]["secure"]


async def test_one_time_password_must_be_changed(
    client: Client, db: Database, clock: Clock
) -> None:
    one_time = await make_user(db, "alice", "admin", password=None, clock=clock)
    assert one_time
    resp = await login(client, "alice", one_time)
    assert resp.status == 303 and resp.headers["Location"] == "/password"
    elsewhere = await client.get("/modalities", allow_redirects=False)
    assert elsewhere.headers["Location"] == "/password"
    token = await csrf_of(client, "/password")
    short = await client.post(
        "/password", data={"csrf": token, "current": one_time, "new": "short", "confirm": "short"}
    )
    assert short.status == 400 and "at least 12" in await short.text()
    done = await client.post(
        "/password",
        data={"csrf": token, "current": one_time, "new": PASSWORD, "confirm": PASSWORD},
        allow_redirects=False,
    )
    assert done.status == 303 and done.headers["Location"] == "/"
    assert (await client.get("/")).status == 200
    assert ("alice", "password_changed") in await audit_actions(db)


async def test_login_failures_are_audited_and_rate_limited(
    client: Client, db: Database, clock: Clock
) -> None:
    await make_user(db, "bob", "viewer", clock=clock)
    assert (await login(client, "nobody-here", "x" * 12)).status == 401
    for _ in range(5):
        assert (await login(client, "bob", "wrong password!")).status == 401
    limited = await login(client, "bob", PASSWORD)  # right password, but too many failures
    assert limited.status == 429 and "Too many failed attempts" in await limited.text()
    actions = await audit_actions(db)
    assert ("?", "login_failed") in actions  # the typed unknown name is not kept
    assert actions.count(("bob", "login_failed")) == 5
    assert ("bob", "login_limited") in actions
    clock.advance(minutes=4)
    ok = await login(client, "bob", PASSWORD)
    assert ok.status == 303 and ok.headers["Location"] == "/"
    assert ("bob", "login") in await audit_actions(db)


async def test_idle_session_expires_and_logout_ends_it(
    client: Client, db: Database, clock: Clock
) -> None:
    await make_user(db, "carol", "viewer", clock=clock)
    await login(client, "carol")
    clock.advance(minutes=29)
    assert (await client.get("/")).status == 200  # activity resets the idle timer
    clock.advance(minutes=29)
    assert (await client.get("/")).status == 200
    clock.advance(minutes=31)
    expired = await client.get("/", allow_redirects=False)
    assert expired.status == 303 and expired.headers["Location"] == "/login?expired=1"
    assert "30 minutes" in await (await client.get("/login?expired=1")).text()
    async with db.transaction("test") as conn:
        assert await conn.fetchval("SELECT end_reason FROM console_sessions") == "idle timeout"

    await login(client, "carol")
    stolen = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE_NAME].value
    out = await post_form(client, "/logout", {})
    assert out.status == 303 and out.headers["Location"] == "/login"
    replay = await client.get("/", cookies={COOKIE_NAME: stolen}, allow_redirects=False)
    assert replay.status == 303  # the server-side row ended with the logout


async def test_absolute_timeout_after_twelve_hours(
    client: Client, db: Database, clock: Clock
) -> None:
    await make_user(db, "dave", "viewer", clock=clock)
    await login(client, "dave")
    for _ in range(12 * 3 + 1):
        clock.advance(minutes=20)
        resp = await client.get("/audit", allow_redirects=False)
        if resp.status != 200:
            break
    assert resp.status == 303 and resp.headers["Location"] == "/login?expired=1"


async def test_forged_posts_are_refused(client: Client, db: Database, clock: Clock) -> None:
    await make_user(db, "erin", "operator", clock=clock)
    await login(client, "erin")
    no_token = await client.post(
        "/modalities/CT", data={"enabled": "1", "note": "x"}, allow_redirects=False
    )
    assert no_token.status == 403
    token = await csrf_of(client, "/modalities")
    cross_site = await client.post(
        "/modalities/CT",
        data={"csrf": token, "enabled": "1", "note": "x"},
        headers={"Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
    )
    assert cross_site.status == 403
    other_origin = await client.post(
        "/modalities/CT",
        data={"csrf": token, "enabled": "1", "note": "x"},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    )
    assert other_origin.status == 403
    async with db.transaction("test") as conn:
        assert await conn.fetchval("SELECT count(*) FROM scheduling_config") == 0
    assert (await audit_actions(db)).count(("erin", "csrf_refused")) == 3


async def test_modality_switch_needs_operator_and_a_note(
    client: Client, db: Database, clock: Clock
) -> None:
    await make_user(db, "vic", "viewer", clock=clock)
    await make_user(db, "olga", "operator", clock=clock)
    await login(client, "vic")
    refused = await post_form(client, "/modalities/CT", {"enabled": "1", "note": "go live"})
    assert refused.status == 403 and "operator role" in await refused.text()
    assert ("vic", "refused") in await audit_actions(db)
    await post_form(client, "/logout", {})

    await login(client, "olga")
    no_note = await post_form(client, "/modalities/CT", {"enabled": "1", "note": " "})
    assert no_note.headers["Location"] == "/modalities?error=note"
    done = await post_form(
        client, "/modalities/CT", {"enabled": "1", "note": "go live"}, page="/modalities"
    )
    assert done.status == 303
    async with db.transaction("test") as conn:
        states = {s.modality: s.enabled for s in await list_modalities(conn, ("CR", "DX"))}
        change = await conn.fetchrow("SELECT * FROM config_audit WHERE item = 'modality:CT'")
        console = await conn.fetchrow("SELECT * FROM console_audit WHERE action = 'modality'")
    assert states["CT"] is True
    assert change["changed_by"] == "olga" and change["note"] == "go live"
    assert (console["old_value"], console["new_value"]) == ("disabled", "enabled")
    page = await (await client.get("/modalities")).text()
    assert "by olga" in page and "go live" in page


async def test_disabling_a_user_ends_their_session(
    client: Client, db: Database, settings: Settings, clock: Clock
) -> None:
    await make_user(db, "root", "admin", clock=clock)
    await make_user(db, "frank", "viewer", clock=clock)
    await login(client, "root")
    assert "frank" in await (await client.get("/users")).text()
    frank = await start_client(deps_for(db, settings, clock))  # a second browser
    try:
        await login(frank, "frank")
        assert (await frank.get("/users", allow_redirects=False)).status == 403
        resp = await post_form(
            client, "/users", {"action": "disable", "name": "frank"}, page="/users"
        )
        assert resp.status == 200
        assert (await frank.get("/", allow_redirects=False)).status == 303
        assert (await login(frank, "frank")).status == 401
    finally:
        await frank.close()
    added = await post_form(
        client, "/users", {"action": "add", "name": "gina", "role": "operator"}, page="/users"
    )
    assert "User gina created" in await added.text()
    actions = await audit_actions(db)
    assert ("root", "user_disable") in actions and ("root", "user_add") in actions
