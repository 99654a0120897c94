"""bots/web_session.py: what the relay's pages share about browsers."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from bots.web_session import LoginThrottle, PublicSite, Sealed, origin, safe_next


def test_safe_next() -> None:
    assert safe_next("/admin", "/admin") == "/admin"
    assert (
        safe_next("/github/setup/callback?code=1&state=2", "/admin")
        == "/github/setup/callback?code=1&state=2"
    )
    for bad in (None, "", "admin", "//x", "/\\x", "http://x/", "/a b", "/a\tb", "/a\\b"):
        assert safe_next(bad, "/admin") == "/admin"


def test_origin_is_scheme_and_host() -> None:
    assert origin("https://relay.example.com:8443/prefix/admin?x=1") == (
        "https://relay.example.com:8443"
    )


def test_a_site_behind_a_path_prefix_on_https() -> None:
    site = PublicSite("https://relay.example.com/relay/")
    assert (site.base, site.origin, site.secure) == (
        "/relay",
        "https://relay.example.com",
        True,
    )
    plain = PublicSite(None)
    assert (plain.base, plain.origin, plain.secure) == ("", None, False)


def test_cookies_are_http_only_and_secure_behind_https() -> None:
    response = Response()
    site = PublicSite("https://relay.example.com")
    site.set_cookie(response, "a", "1", max_age=60, path="/admin", samesite="strict")
    site.delete_cookie(response, "b", "/admin")
    set_cookie, deleted = (header.lower() for header in response.headers.getlist("set-cookie"))
    for part in ("a=1", "httponly", "secure", "samesite=strict", "path=/admin", "max-age=60"):
        assert part in set_cookie
    assert "max-age=0" in deleted and "secure" in deleted and "httponly" in deleted
    response = Response()
    PublicSite("http://relay.example.com").set_cookie(
        response, "a", "1", max_age=60, path="/", samesite="lax"
    )
    assert "secure" not in response.headers["set-cookie"].lower()


def request_from(origin_header: str | None, url: str = "http://10.0.0.5:8000/admin") -> Request:
    parts = urlsplit(url)
    headers = [(b"host", parts.netloc.encode())]
    if origin_header is not None:
        headers.append((b"origin", origin_header.encode()))
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": parts.scheme,
            "path": parts.path,
            "query_string": b"",
            "headers": headers,
            "server": (parts.hostname, parts.port),
        }
    )


def test_same_origin_is_public_urls_or_the_one_the_request_was_sent_to() -> None:
    site = PublicSite("https://relay.example.com")
    assert site.same_origin(request_from(None))
    assert site.same_origin(request_from("https://relay.example.com"))
    assert site.same_origin(request_from("http://10.0.0.5:8000"))
    assert not site.same_origin(request_from("https://evil.example"))


def test_a_sealed_value_opens_only_for_its_purpose_and_within_its_age() -> None:
    now = [1_800_000_000.0]
    session = Sealed(b"k" * 32, "session", max_age=60, clock=lambda: now[0])
    other = Sealed(b"k" * 32, "flash", max_age=60, clock=lambda: now[0])
    sealed = session.seal("nonce")
    assert session.unseal(sealed) == "nonce"
    assert other.unseal(sealed) is None
    assert session.unseal("garbage") is None and session.unseal(None) is None
    now[0] += 61
    assert session.unseal(sealed) is None


def test_the_throttle_waits_after_too_many_failures_and_forgets_a_success() -> None:
    now = [0.0]
    throttle = LoginThrottle(allowed=2, window=600, clock=lambda: now[0])
    throttle.failed("a")
    assert throttle.wait_seconds("a") == 0.0
    throttle.failed("a")
    assert throttle.wait_seconds("a") == 600.0
    assert throttle.wait_seconds("b") == 0.0
    now[0] += 600
    assert throttle.wait_seconds("a") == 0.0
    throttle.failed("a")
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle.wait_seconds("a") == 0.0
