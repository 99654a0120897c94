"""The status page's login (relay/admin/session.py), through its routes, on both
databases: the session cookie and its expiry, the login form's token, forged and
rotated cookies, the throttle, logout, and forms over the limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes

from bots.web_session import LoginThrottle
from db.job_kinds import JobStatus
from db.store import Store
from relay.admin.session import (
    FLASH_COOKIE,
    LOGIN_COOKIE,
    LOGIN_FORM_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
)
from tests.support.admin_page import (
    API_TOKEN,
    PUBLIC_URL,
    Clock,
    csrf_of,
    failed_job,
    harness,
    login,
    set_cookies,
    status_page,
)


async def test_the_status_page_sends_a_browser_without_session_to_the_login(store: Store) -> None:
    async with harness(store) as h:
        response = await h.client.get("/admin")
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/login"
        form = await h.client.get("/admin/login")
        assert form.status_code == 200
        assert 'name="token"' in form.text and 'type="password"' in form.text
        assert "http-equiv" not in form.text  # no refresh: it would lose what is typed
        cookie = set_cookies(form)[LOGIN_COOKIE].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
        assert "path=/admin" in cookie
        assert form.headers["cache-control"] == "no-store"
        assert "form-action 'self'" in form.headers["content-security-policy"]


async def test_the_right_token_opens_a_session_with_a_safe_cookie(store: Store) -> None:
    async with harness(store) as h:
        response = await login(h.client)
        assert response.status_code == 303
        assert response.headers["location"] == "/admin"
        cookie = set_cookies(response)[SESSION_COOKIE]
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
        assert f"max-age={SESSION_SECONDS}" in flags
        assert API_TOKEN not in cookie
        html = await status_page(h)
        assert "agent-relay status" in html
        assert '<meta http-equiv="refresh" content="15">' in html


async def test_the_session_cookie_is_not_secure_behind_a_plain_http_public_url(
    store: Store,
) -> None:
    async with harness(store, public_url="http://relay.example.com") as h:
        response = await login(h.client)
        assert response.status_code == 303
        assert "secure" not in set_cookies(response)[SESSION_COOKIE].lower()


async def test_a_wrong_token_is_401_and_opens_nothing(store: Store) -> None:
    async with harness(store) as h:
        response = await login(h.client, token="not-the-token")
        assert response.status_code == 401
        assert "That is not the API_TOKEN" in response.text
        assert SESSION_COOKIE not in set_cookies(response)
        assert (await h.client.get("/admin")).status_code == 303


async def test_failed_logins_are_throttled_per_client(store: Store) -> None:
    clock = Clock()
    throttle = LoginThrottle(allowed=2, window=600, clock=clock)
    async with harness(store, throttle=throttle) as h:
        for _ in range(2):
            assert (await login(h.client, token="guess")).status_code == 401
        blocked = await login(h.client)  # even the right token waits now
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= 600
        assert SESSION_COOKIE not in set_cookies(blocked)
        clock.now += 601
        assert (await login(h.client)).status_code == 303


async def test_a_session_expires_on_the_server(store: Store) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        page = await h.client.get("/admin")
        assert page.status_code == 200
        h.clock.now += SESSION_SECONDS + 1
        # The browser would have dropped the cookie; the server does not rely on that.
        assert (await h.client.get("/admin")).status_code == 303
        retry = await h.client.post(
            f"/admin/jobs/{job_id}/retry", data={"csrf": csrf_of(page.text)}
        )
        assert retry.status_code == 403
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED


def _later(value: str) -> str:
    """The session cookie `payload.timestamp.signature` with its time an hour later."""
    payload, stamp, signature = value.split(".")
    later = base64_encode(int_to_bytes(bytes_to_int(base64_decode(stamp)) + 3600)).decode()
    return f"{payload}.{later}.{signature}"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda v: "garbage", id="garbage"),
        pytest.param(lambda v: "", id="empty"),
        pytest.param(_later, id="later"),
        pytest.param(lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"), id="signature"),
        pytest.param(lambda v: v + ".extra", id="extra-part"),
        pytest.param(lambda v: v.partition(".")[2], id="no-payload"),
    ],
)
async def test_forged_session_cookies_are_refused(store: Store, forge: Any) -> None:
    async with harness(store) as h:
        real = set_cookies(await login(h.client))[SESSION_COOKIE]
        value = real.partition("=")[2].partition(";")[0]
        async with httpx.AsyncClient(transport=h.client._transport, base_url=PUBLIC_URL) as other:
            other.cookies.set(SESSION_COOKIE, forge(value))
            assert (await other.get("/admin")).status_code == 303


async def test_a_value_signed_for_another_purpose_is_no_session(store: Store) -> None:
    """The login form's token is signed by the same key (and holds a nonce of the same
    shape), but for another purpose: as a session cookie it opens nothing."""
    async with harness(store) as h:
        login_token = csrf_of((await h.client.get("/admin/login")).text)
        h.client.cookies.set(SESSION_COOKIE, login_token)
        assert (await h.client.get("/admin")).status_code == 303


async def test_rotating_api_token_or_secret_key_ends_every_session(store: Store) -> None:
    async with harness(store) as h:
        real = set_cookies(await login(h.client))[SESSION_COOKIE]
        value = real.partition("=")[2].partition(";")[0]
    for changed in ({"api_token": "a-rotated-api-token-0123"}, {"secret_key": "x" * 32}):
        async with harness(store, **changed) as rotated:
            rotated.client.cookies.set(SESSION_COOKIE, value)
            assert (await rotated.client.get("/admin")).status_code == 303


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/github/setup?organization=acme", "/github/setup?organization=acme"),
        ("//evil.example/x", "/admin"),
        ("/\\evil.example", "/admin"),
        ("https://evil.example/", "/admin"),
        ("javascript:alert(1)", "/admin"),
        ("/admin\r\nSet-Cookie: x=1", "/admin"),
        ("", "/admin"),
    ],
)
async def test_login_goes_on_only_to_paths_of_this_relay(
    store: Store, target: str, location: str
) -> None:
    async with harness(store) as h:
        response = await login(h.client, then=target)
        assert response.status_code == 303
        assert response.headers["location"] == location


@pytest.mark.parametrize(
    "spoil",
    ["no-cookie", "wrong-field", "no-field", "other-origin"],
)
async def test_a_login_without_its_form_token_is_403(store: Store, spoil: str) -> None:
    async with harness(store) as h:
        page = await h.client.get("/admin/login")
        fields = {"csrf": csrf_of(page.text), "token": API_TOKEN}
        headers = {}
        if spoil == "no-cookie":
            h.client.cookies.clear()
        elif spoil == "wrong-field":
            fields["csrf"] = "A" * 43
        elif spoil == "no-field":
            del fields["csrf"]
        else:
            headers["Origin"] = "https://evil.example"
        response = await h.client.post("/admin/login", data=fields, headers=headers)
        assert response.status_code == 403
        assert "Nothing was changed" in response.text
        assert SESSION_COOKIE not in set_cookies(response)


async def test_a_login_form_older_than_an_hour_is_403(store: Store) -> None:
    async with harness(store) as h:
        page = await h.client.get("/admin/login")
        h.clock.now += LOGIN_FORM_SECONDS + 1
        response = await h.client.post(
            "/admin/login", data={"csrf": csrf_of(page.text), "token": API_TOKEN}
        )
        assert response.status_code == 403
        assert SESSION_COOKIE not in set_cookies(response)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"data": {f"f{n}": "x" for n in range(11)}}, id="too-many-fields"),
        pytest.param({"data": {"csrf": "x" * 9000}}, id="a-field-too-large"),
        pytest.param({"files": {"csrf": ("csrf.txt", b"x")}}, id="a-file"),
    ],
)
async def test_forms_over_the_limits_are_400_and_change_nothing(
    store: Store, body: dict[str, Any]
) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        csrf = csrf_of(await status_page(h))
        if "data" in body and "csrf" not in body["data"]:
            body["data"]["csrf"] = csrf
        for path in (f"/admin/jobs/{job_id}/retry", "/admin/logout", "/admin/login"):
            response = await h.client.post(path, **body)
            assert response.status_code == 400, (path, response.text)
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert (await h.client.get("/admin")).status_code == 200  # still logged in


async def test_a_login_from_the_relays_own_origin_is_accepted(store: Store) -> None:
    async with harness(store) as h:
        page = await h.client.get("/admin/login")
        response = await h.client.post(
            "/admin/login",
            data={"csrf": csrf_of(page.text), "token": API_TOKEN},
            headers={"Origin": PUBLIC_URL},
        )
        assert response.status_code == 303


async def test_logout_ends_the_session_and_needs_the_form_token(store: Store) -> None:
    async with harness(store) as h:
        await login(h.client)
        csrf = csrf_of(await status_page(h))
        refused = await h.client.post("/admin/logout", data={"csrf": "B" * 43})
        assert refused.status_code == 403
        assert (await h.client.get("/admin")).status_code == 200
        response = await h.client.post("/admin/logout", data={"csrf": csrf})
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/login"
        assert "max-age=0" in set_cookies(response)[SESSION_COOKIE].lower()
        assert (await h.client.get("/admin")).status_code == 303


async def test_a_flash_message_the_relay_did_not_sign_is_not_shown(store: Store) -> None:
    async with harness(store) as h:
        await login(h.client)
        h.client.cookies.set(FLASH_COOKIE, "UGF5IHRoZSBpbnZvaWNlIGF0IGV2aWwuZXhhbXBsZQ.forged")
        html = await status_page(h)
        assert 'id="flash"' not in html and "invoice" not in html
