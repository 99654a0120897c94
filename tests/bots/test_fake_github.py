"""The fake GitHub, driven by plain HTTP and by gidgethub's real client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import gidgethub
import gidgethub.apps
import gidgethub.httpx
import gidgethub.sansio
import httpx
import jwt
import pytest

from tests.support.fake_github import (
    FakeGitHub,
    generate_private_key_pem,
    github_signature_headers,
)

APP_ID = 123
SLUG = "relay-bot"
INSTALLATION = 42
OTHER_INSTALLATION = 43
REPO = "acme/api"
OTHER_REPO = "acme/other"
PERSON = "alice"


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_private_key_pem()


@pytest.fixture
def fake(pem: str) -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_app(APP_ID, SLUG, name="Relay Bot", private_key_pem=pem)
        server.add_installation(INSTALLATION, APP_ID, account="acme", repositories=[REPO])
        server.add_installation(
            OTHER_INSTALLATION, APP_ID, account="acme", repositories=[OTHER_REPO]
        )
        yield server


def app_jwt(pem: str, *, iss: Any = APP_ID, iat: int | None = None, lifetime: int = 540) -> str:
    issued = int(time.time()) - 30 if iat is None else iat
    claims = {"iat": issued, "exp": issued + lifetime, "iss": iss}
    # PyJWT's encode insists on a string iss; sign the raw claims to allow an int.
    return jwt.api_jws.encode(json.dumps(claims).encode(), pem, algorithm="RS256")


def api(
    fake: FakeGitHub,
    method: str,
    path: str,
    *,
    auth: str | None = None,
    body: Any = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    headers = {"Accept": "application/vnd.github+json"}
    if auth is not None:
        headers["Authorization"] = auth
    return httpx.request(
        method,
        f"{fake.api_url}{path}",
        headers=headers,
        json=body,
        params=params,
        timeout=10,
    )


def mint(fake: FakeGitHub, pem: str, installation_id: int = INSTALLATION) -> str:
    response = api(
        fake,
        "POST",
        f"/app/installations/{installation_id}/access_tokens",
        auth=f"Bearer {gidgethub.apps.get_jwt(app_id=str(APP_ID), private_key=pem)}",
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_get_app_with_a_gidgethub_jwt(fake: FakeGitHub, pem: str) -> None:
    token = gidgethub.apps.get_jwt(app_id=str(APP_ID), private_key=pem)
    response = api(fake, "GET", "/app", auth=f"Bearer {token}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert int(response.headers["x-ratelimit-limit"]) == 5000
    assert int(response.headers["x-ratelimit-remaining"]) < 5000
    assert int(response.headers["x-ratelimit-reset"]) > time.time()
    app = response.json()
    assert app["id"] == APP_ID
    assert app["slug"] == SLUG
    assert app["name"] == "Relay Bot"
    assert app["owner"]["login"]
    assert app["html_url"] == f"{fake.web_url}/apps/{SLUG}"
    assert app["installations_count"] == 2
    call = fake.calls("GET", "/app")[0]
    assert (call.auth, call.installation_id, call.status) == ("jwt", None, 200)


def test_jwt_variants(fake: FakeGitHub, pem: str) -> None:
    now = int(time.time())
    accepted = {
        "string iss": app_jwt(pem, iss=str(APP_ID)),
        "int iss": app_jwt(pem, iss=APP_ID),
        "expired within the 60 s skew": app_jwt(pem, iat=now - 600, lifetime=570),
        "issued a little in the future": app_jwt(pem, iat=now + 30),
    }
    for label, token in accepted.items():
        assert api(fake, "GET", "/app", auth=f"Bearer {token}").status_code == 200, label

    refused = {
        "signed by another key": app_jwt(generate_private_key_pem()),
        "expired": app_jwt(pem, iat=now - 900, lifetime=600),
        "lives longer than 10 minutes": app_jwt(pem, lifetime=601),
        "unknown app": app_jwt(pem, iss=999),
        "not a JWT": "not.a.jwt",
    }
    for label, token in refused.items():
        response = api(fake, "GET", "/app", auth=f"Bearer {token}")
        assert response.status_code == 401, label
        assert response.json()["message"] == "A JSON web token could not be decoded", label

    assert api(fake, "GET", "/app").status_code == 401
    installation_token = mint(fake, pem)
    as_token = api(fake, "GET", "/app/installations", auth=f"token {installation_token}")
    assert as_token.status_code == 401
    assert as_token.json()["message"] == "A JSON web token could not be decoded"


def test_list_installations_and_repo_installation(fake: FakeGitHub, pem: str) -> None:
    auth = f"Bearer {app_jwt(pem)}"
    listed = api(fake, "GET", "/app/installations", auth=auth).json()
    assert [i["id"] for i in listed] == [INSTALLATION, OTHER_INSTALLATION]
    assert listed[0]["account"]["login"] == "acme"
    assert listed[0]["app_id"] == APP_ID

    found = api(fake, "GET", f"/repos/{OTHER_REPO}/installation", auth=auth)
    assert found.json()["id"] == OTHER_INSTALLATION
    assert api(fake, "GET", "/repos/acme/nope/installation", auth=auth).status_code == 404


def test_token_mint_use_and_expiry(fake: FakeGitHub, pem: str) -> None:
    fake.add_issue(REPO, 7, title="Broken build", body="it is red", user=PERSON)
    auth = f"Bearer {app_jwt(pem)}"
    minted = api(fake, "POST", f"/app/installations/{INSTALLATION}/access_tokens", auth=auth)

    assert minted.status_code == 201
    answer = minted.json()
    assert answer["token"].startswith("ghs_") and len(answer["token"]) == 40
    assert answer["repository_selection"] == "selected"
    assert answer["permissions"]["issues"] == "write"
    expires = datetime.strptime(answer["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 3500 < expires.timestamp() - time.time() <= 3600
    assert fake.token_mints(INSTALLATION) == 1
    assert fake.token_mints(OTHER_INSTALLATION) == 0
    mint_call = fake.calls("POST", r"/app/installations/\d+/access_tokens")[0]
    assert (mint_call.auth, mint_call.installation_id) == ("jwt", INSTALLATION)

    token = answer["token"]
    for header in (f"token {token}", f"Bearer {token}"):
        response = api(fake, "GET", f"/repos/{REPO}/issues/7", auth=header)
        assert response.status_code == 200
        assert response.json()["title"] == "Broken build"
    calls = fake.calls("GET", r"/repos/acme/api/issues/\d+")
    assert [(c.auth, c.installation_id, c.status) for c in calls] == [
        ("token", INSTALLATION, 200),
        ("token", INSTALLATION, 200),
    ]

    fake.expire_tokens()
    expired = api(fake, "GET", f"/repos/{REPO}/issues/7", auth=f"token {token}")
    assert expired.status_code == 401
    assert expired.json()["message"] == "Bad credentials"
    assert fake.calls()[-1].installation_id == INSTALLATION

    fresh = mint(fake, pem)
    assert fresh != token
    assert fake.token_mints(INSTALLATION) == 2
    assert api(fake, "GET", f"/repos/{REPO}/issues/7", auth=f"token {fresh}").status_code == 200

    unknown = api(fake, "GET", f"/repos/{REPO}/issues/7", auth="token ghs_unknown")
    assert unknown.status_code == 401 and unknown.json()["message"] == "Bad credentials"
    assert api(fake, "GET", f"/repos/{REPO}/issues/7").status_code == 401


def test_installation_of_another_app_and_repo_outside_installation(
    fake: FakeGitHub, pem: str
) -> None:
    other_pem = fake.add_app(77, "other-app")
    assert "PRIVATE KEY" in other_pem
    fake.add_installation(78, 77, account="globex", repositories=["globex/site"])
    own = api(
        fake,
        "POST",
        "/app/installations/78/access_tokens",
        auth=f"Bearer {app_jwt(pem)}",
    )
    assert own.status_code == 404
    other = api(
        fake,
        "POST",
        "/app/installations/78/access_tokens",
        auth=f"Bearer {app_jwt(other_pem, iss=77)}",
    )
    assert other.status_code == 201

    fake.add_issue(OTHER_REPO, 1, title="Elsewhere", body="", user=PERSON)
    token = mint(fake, pem, INSTALLATION)
    response = api(fake, "GET", f"/repos/{OTHER_REPO}/issues/1", auth=f"token {token}")
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"
    assert fake.calls()[-1].installation_id == INSTALLATION
    # Owner and name are case-insensitive, as on GitHub.
    fake.add_issue(REPO, 2, title="Here", body="", user=PERSON)
    assert api(fake, "GET", "/repos/ACME/Api/issues/2", auth=f"token {token}").status_code == 200

    listed = api(fake, "GET", "/installation/repositories", auth=f"token {token}").json()
    assert [r["full_name"] for r in listed["repositories"]] == [REPO]


def test_collaborator_permission(fake: FakeGitHub, pem: str) -> None:
    token = mint(fake, pem)
    fake.set_permission(REPO, "alice", "admin")
    fake.set_permission(REPO, "bob", "maintain")
    fake.set_permission(REPO, "carol", "triage")
    fake.set_permission(REPO, "dave", "none")
    fake.set_permission(OTHER_REPO, "erin", "write")

    def permission(login: str) -> httpx.Response:
        path = f"/repos/{REPO}/collaborators/{login}/permission"
        return api(fake, "GET", path, auth=f"token {token}")

    alice = permission("alice").json()
    assert (alice["permission"], alice["role_name"], alice["user"]["login"]) == (
        "admin",
        "admin",
        "alice",
    )
    bob = permission("bob").json()
    assert (bob["permission"], bob["role_name"]) == ("write", "maintain")
    assert bob["user"]["permissions"]["maintain"] is True
    assert bob["user"]["permissions"]["admin"] is False
    carol = permission("carol").json()
    assert (carol["permission"], carol["role_name"]) == ("read", "triage")
    assert permission("dave").json()["permission"] == "none"
    # A user GitHub knows, without a role on this repository.
    assert permission("erin").json()["permission"] == "none"
    unknown = permission("nobody-at-all")
    assert unknown.status_code == 404

    with pytest.raises(ValueError):
        fake.set_permission(REPO, "alice", "owner")


def test_issue_and_pull_request(fake: FakeGitHub, pem: str) -> None:
    issue = fake.add_issue(REPO, 3, title="Plain", body="an issue", user=PERSON)
    pull = fake.add_issue(
        REPO,
        4,
        title="Fix it",
        body="a PR",
        user="bob",
        pull_request={"head": "fix-build", "base": "main"},
    )
    assert "pull_request" not in issue
    assert issue["html_url"] == f"{fake.web_url}/{REPO}/issues/3"
    assert pull["pull_request"]["html_url"] == f"{fake.web_url}/{REPO}/pull/4"
    token = f"token {mint(fake, pem)}"

    shown = api(fake, "GET", f"/repos/{REPO}/issues/4", auth=token).json()
    assert shown["pull_request"]["url"] == f"{fake.api_url}/repos/{REPO}/pulls/4"
    assert shown["user"] == {**shown["user"], "login": "bob", "type": "User"}

    detail = api(fake, "GET", f"/repos/{REPO}/pulls/4", auth=token).json()
    assert detail["number"] == 4
    assert (detail["title"], detail["body"]) == ("Fix it", "a PR")
    assert detail["html_url"] == f"{fake.web_url}/{REPO}/pull/4"
    assert (detail["head"]["ref"], detail["base"]["ref"]) == ("fix-build", "main")
    assert detail["user"]["login"] == "bob"

    assert api(fake, "GET", f"/repos/{REPO}/pulls/3", auth=token).status_code == 404
    assert api(fake, "GET", f"/repos/{REPO}/issues/99", auth=token).status_code == 404
    assert api(fake, "GET", f"/repos/{REPO}/nothing/here", auth=token).status_code == 404


def test_issue_comments_paginate_with_link_headers(fake: FakeGitHub, pem: str) -> None:
    fake.add_issue(REPO, 5, title="Chatty", body="", user=PERSON)
    for number in range(5):
        fake.add_comment(REPO, 5, f"comment {number}", user=PERSON)
    token = f"token {mint(fake, pem)}"

    bodies: list[str] = []
    url: str | None = f"{fake.api_url}/repos/{REPO}/issues/5/comments?per_page=2"
    pages = 0
    while url is not None:
        response = httpx.get(url, headers={"Authorization": token}, timeout=10)
        pages += 1
        bodies += [c["body"] for c in response.json()]
        next_link = response.links.get("next")
        url = next_link["url"] if next_link else None
        if pages == 1:
            assert set(response.links) == {"next", "last"}
            last = parse_qs(urlsplit(response.links["last"]["url"]).query)
            assert last["page"] == ["3"]
        if pages == 2:
            assert set(response.links) == {"prev", "next", "last", "first"}
    assert pages == 3
    assert bodies == [f"comment {n}" for n in range(5)]
    assert [c.query for c in fake.calls("GET", r".*/comments")][-1] == {
        "per_page": "2",
        "page": "3",
    }

    default = api(fake, "GET", f"/repos/{REPO}/issues/5/comments", auth=token)
    assert len(default.json()) == 5
    assert "link" not in default.headers
    assert [c["body"] for c in fake.comments(REPO, 5)] == bodies


def test_create_and_edit_comment_as_the_bot(fake: FakeGitHub, pem: str) -> None:
    fake.add_issue(REPO, 6, title="Help", body="", user=PERSON)
    mention = fake.add_comment(REPO, 6, "@relay-bot please look", user=PERSON)
    assert mention["user"] == {**mention["user"], "login": PERSON, "type": "User"}
    assert mention["html_url"] == f"{fake.web_url}/{REPO}/issues/6#issuecomment-{mention['id']}"
    token = f"token {mint(fake, pem)}"

    created = api(
        fake, "POST", f"/repos/{REPO}/issues/6/comments", auth=token, body={"body": "On it."}
    )
    assert created.status_code == 201
    comment = created.json()
    assert comment["body"] == "On it."
    assert comment["user"]["login"] == f"{SLUG}[bot]"
    assert comment["user"]["type"] == "Bot"
    assert comment["html_url"].endswith(f"#issuecomment-{comment['id']}")
    assert comment["id"] != mention["id"]
    assert fake.calls("POST")[-1].body == {"body": "On it."}

    edited = api(
        fake,
        "PATCH",
        f"/repos/{REPO}/issues/comments/{comment['id']}",
        auth=token,
        body={"body": "Done."},
    )
    assert edited.status_code == 200
    assert edited.json()["body"] == "Done."
    assert [c["body"] for c in fake.comments(REPO, 6)] == ["@relay-bot please look", "Done."]
    empty = api(fake, "POST", f"/repos/{REPO}/issues/6/comments", auth=token, body={})
    assert empty.status_code == 422
    missing = api(fake, "POST", f"/repos/{REPO}/issues/60/comments", auth=token, body={"body": "x"})
    assert missing.status_code == 404


def test_review_comment_replies_join_the_thread(fake: FakeGitHub, pem: str) -> None:
    fake.add_issue(REPO, 8, title="PR", body="", user="bob", pull_request={"head": "b"})
    fake.add_issue(REPO, 9, title="Other PR", body="", user="bob", pull_request={"head": "c"})
    top = fake.add_review_comment(
        REPO, 8, "why?", user=PERSON, path="src/app.py", line=12, diff_hunk="@@ -1 +1 @@"
    )
    follow_up = fake.add_review_comment(
        REPO,
        8,
        "@relay-bot explain",
        user=PERSON,
        path="src/app.py",
        line=12,
        diff_hunk="@@ -1 +1 @@",
        in_reply_to=top["id"],
    )
    elsewhere = fake.add_review_comment(
        REPO, 9, "unrelated", user=PERSON, path="x.py", line=1, diff_hunk="@@"
    )
    assert "in_reply_to_id" not in top
    assert follow_up["in_reply_to_id"] == top["id"]
    assert follow_up["html_url"] == f"{fake.web_url}/{REPO}/pull/8#discussion_r{follow_up['id']}"
    token = f"token {mint(fake, pem)}"

    reply = api(
        fake,
        "POST",
        f"/repos/{REPO}/pulls/8/comments/{follow_up['id']}/replies",
        auth=token,
        body={"body": "Because."},
    )
    assert reply.status_code == 201
    answer = reply.json()
    assert answer["in_reply_to_id"] == top["id"]
    assert (answer["path"], answer["line"]) == ("src/app.py", 12)
    assert answer["user"]["login"] == f"{SLUG}[bot]"

    wrong_pr = api(
        fake,
        "POST",
        f"/repos/{REPO}/pulls/8/comments/{elsewhere['id']}/replies",
        auth=token,
        body={"body": "no"},
    )
    assert wrong_pr.status_code == 404

    listed = api(fake, "GET", f"/repos/{REPO}/pulls/8/comments", auth=token).json()
    assert [c["body"] for c in listed] == ["why?", "@relay-bot explain", "Because."]
    single = api(fake, "GET", f"/repos/{REPO}/pulls/comments/{top['id']}", auth=token).json()
    assert single["diff_hunk"] == "@@ -1 +1 @@"
    assert [c["id"] for c in fake.review_comments(REPO, 8)] == [c["id"] for c in listed]


def test_reactions(fake: FakeGitHub, pem: str) -> None:
    fake.add_issue(REPO, 10, title="PR", body="", user=PERSON, pull_request={"head": "x"})
    comment = fake.add_comment(REPO, 10, "@relay-bot hi", user=PERSON)
    review = fake.add_review_comment(
        REPO, 10, "@relay-bot here", user=PERSON, path="a.py", line=3, diff_hunk="@@"
    )
    token = f"token {mint(fake, pem)}"
    on_comment = f"/repos/{REPO}/issues/comments/{comment['id']}/reactions"

    first = api(fake, "POST", on_comment, auth=token, body={"content": "eyes"})
    assert first.status_code == 201
    assert first.json()["content"] == "eyes"
    assert first.json()["user"]["login"] == f"{SLUG}[bot]"
    again = api(fake, "POST", on_comment, auth=token, body={"content": "eyes"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert fake.reactions("issue_comment", REPO, comment["id"]) == {"eyes"}
    assert fake.comments(REPO, 10)[0]["reactions"]["eyes"] == 1

    on_review = f"/repos/{REPO}/pulls/comments/{review['id']}/reactions"
    assert api(fake, "POST", on_review, auth=token, body={"content": "+1"}).status_code == 201
    assert fake.reactions("review_comment", REPO, review["id"]) == {"+1"}
    on_issue = f"/repos/{REPO}/issues/10/reactions"
    rocket = api(fake, "POST", on_issue, auth=token, body={"content": "rocket"}).json()
    assert fake.reactions("issue", REPO, 10) == {"rocket"}

    invalid = api(fake, "POST", on_issue, auth=token, body={"content": "party"})
    assert invalid.status_code == 422
    listed = api(fake, "GET", on_comment, auth=token).json()
    assert [r["content"] for r in listed] == ["eyes"]

    deleted = api(fake, "DELETE", f"{on_comment}/{first.json()['id']}", auth=token)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert fake.reactions("issue_comment", REPO, comment["id"]) == set()
    assert api(fake, "DELETE", f"{on_issue}/{rocket['id']}", auth=token).status_code == 204
    assert fake.reactions("issue", REPO, 10) == set()
    assert api(fake, "DELETE", f"{on_issue}/{rocket['id']}", auth=token).status_code == 404
    missing = f"/repos/{REPO}/issues/comments/1/reactions"
    assert api(fake, "POST", missing, auth=token, body={"content": "eyes"}).status_code == 404


def test_fail_next_with_headers_and_count(fake: FakeGitHub, pem: str) -> None:
    fake.add_issue(REPO, 11, title="t", body="", user=PERSON)
    token = f"token {mint(fake, pem)}"
    reset = str(int(time.time()) + 120)
    comments = r"/repos/acme/api/issues/\d+/comments"
    fake.fail_next(
        "POST",
        comments,
        403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
    )
    fake.fail_next("post", comments, 429, headers={"Retry-After": "7"}, count=2)
    fake.fail_next("GET", r"/repos/acme/api/issues/11", 502, body={"message": "upstream"})

    limited = api(fake, "POST", f"/repos/{REPO}/issues/11/comments", auth=token, body={"body": "a"})
    assert limited.status_code == 403
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-reset"] == reset
    assert limited.headers["x-ratelimit-limit"] == "5000"
    assert "rate limit" in limited.json()["message"]
    for _ in range(2):
        secondary = api(
            fake, "POST", f"/repos/{REPO}/issues/11/comments", auth=token, body={"body": "b"}
        )
        assert secondary.status_code == 429
        assert secondary.headers["retry-after"] == "7"
    broken = api(fake, "GET", f"/repos/{REPO}/issues/11", auth=token)
    assert (broken.status_code, broken.json()) == (502, {"message": "upstream"})

    posted = api(fake, "POST", f"/repos/{REPO}/issues/11/comments", auth=token, body={"body": "c"})
    assert posted.status_code == 201
    assert [c.status for c in fake.calls("POST", comments)] == [403, 429, 429, 201]
    assert [c["body"] for c in fake.comments(REPO, 11)] == ["c"]

    fake.clear_calls()
    assert fake.calls() == []


def test_manifest_flow(fake: FakeGitHub) -> None:
    manifest = {
        "name": "Agent Relay (Acme)",
        "url": "https://relay.example.com",
        "hook_attributes": {"url": "https://relay.example.com/github/webhooks"},
        "redirect_url": "https://relay.example.com/github/setup/done",
        "public": False,
        "default_permissions": {"issues": "write", "pull_requests": "write"},
        "default_events": ["issue_comment", "pull_request_review_comment"],
    }
    response = httpx.post(
        f"{fake.web_url}/organizations/acme/settings/apps/new",
        params={"state": "s3cret"},
        data={"manifest": json.dumps(manifest)},
        follow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == manifest["redirect_url"]
    query = parse_qs(location.query)
    assert query["state"] == ["s3cret"]
    code = query["code"][0]
    assert fake.received_manifests == [manifest]
    assert fake.manifest_posts[0].org == "acme"

    converted = httpx.post(f"{fake.api_url}/app-manifests/{code}/conversions", timeout=10)
    assert converted.status_code == 201
    app = converted.json()
    assert app["slug"] == "agent-relay-acme"
    assert app["name"] == "Agent Relay (Acme)"
    assert app["owner"]["login"] == "acme"
    assert app["external_url"] == "https://relay.example.com"
    assert app["html_url"] == f"{fake.web_url}/apps/agent-relay-acme"
    assert app["events"] == manifest["default_events"]
    assert app["permissions"]["issues"] == "write"
    for key in ("node_id", "description", "created_at", "updated_at", "client_id"):
        assert key in app
    assert app["client_secret"] and app["webhook_secret"]
    assert "BEGIN RSA PRIVATE KEY" in app["pem"]
    assert httpx.post(f"{fake.api_url}/app-manifests/{code}/conversions").status_code == 404

    registered = fake.app_by_slug("agent-relay-acme")
    assert (registered.app_id, registered.private_key_pem) == (app["id"], app["pem"])
    assert (registered.webhook_secret, registered.client_id, registered.client_secret) == (
        app["webhook_secret"],
        app["client_id"],
        app["client_secret"],
    )
    signed = gidgethub.apps.get_jwt(app_id=str(app["id"]), private_key=app["pem"])
    me = api(fake, "GET", "/app", auth=f"Bearer {signed}").json()
    assert (me["id"], me["slug"]) == (app["id"], "agent-relay-acme")

    personal = httpx.post(
        f"{fake.web_url}/settings/apps/new",
        data={"manifest": json.dumps({**manifest, "name": "Agent Relay (Acme)"})},
        follow_redirects=False,
        timeout=10,
    )
    assert personal.status_code == 302
    assert "state" not in parse_qs(urlsplit(personal.headers["location"]).query)
    assert fake.manifest_posts[1].org is None
    second_code = parse_qs(urlsplit(personal.headers["location"]).query)["code"][0]
    second = httpx.post(f"{fake.api_url}/app-manifests/{second_code}/conversions").json()
    assert second["slug"] != "agent-relay-acme"
    assert second["id"] != app["id"]
    with pytest.raises(KeyError):
        fake.app_by_slug("no-such-app")


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"hook_attributes": {"url": "h"}, "redirect_url": "r"}),
        json.dumps({"url": "u", "redirect_url": "r"}),
        json.dumps({"url": "u", "hook_attributes": {}, "redirect_url": "r"}),
        json.dumps({"url": "u", "hook_attributes": {"url": "h"}}),
    ],
)
def test_manifest_that_is_not_acceptable(fake: FakeGitHub, manifest: str) -> None:
    response = httpx.post(
        f"{fake.web_url}/settings/apps/new?state=x",
        data={"manifest": manifest},
        follow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 400
    assert fake.received_manifests == []


async def test_gidgethub_client_against_the_fake(fake: FakeGitHub, pem: str) -> None:
    fake.add_issue(REPO, 12, title="Via gidgethub", body="", user=PERSON)
    for number in range(3):
        fake.add_comment(REPO, 12, f"earlier {number}", user=PERSON)
    fake.set_permission(REPO, PERSON, "write")

    async with httpx.AsyncClient(timeout=10) as client:
        gh = gidgethub.httpx.GitHubAPI(client, "agent-relay-tests", base_url=fake.api_url)
        minted = await gidgethub.apps.get_installation_access_token(
            gh, installation_id=str(INSTALLATION), app_id=str(APP_ID), private_key=pem
        )
        token = minted["token"]
        assert token.startswith("ghs_")
        assert fake.token_mints(INSTALLATION) == 1

        permission = await gh.getitem(
            "/repos/{owner}/{repo}/collaborators/{login}/permission",
            {"owner": "acme", "repo": "api", "login": PERSON},
            oauth_token=token,
        )
        assert permission["permission"] == "write"

        posted = await gh.post(
            f"/repos/{REPO}/issues/12/comments", data={"body": "hello"}, oauth_token=token
        )
        assert posted["user"]["login"] == f"{SLUG}[bot]"

        bodies = [
            c["body"]
            async for c in gh.getiter(
                f"/repos/{REPO}/issues/12/comments?per_page=2", oauth_token=token
            )
        ]
        assert bodies == ["earlier 0", "earlier 1", "earlier 2", "hello"]
        assert len(fake.calls("GET", r"/repos/acme/api/issues/12/comments")) == 2
        assert gh.rate_limit is not None and gh.rate_limit.limit == 5000

        fake.fail_next(
            "GET",
            r"/repos/acme/api/issues/12",
            403,
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()))},
        )
        with pytest.raises(gidgethub.RateLimitExceeded):
            await gh.getitem(f"/repos/{REPO}/issues/12", oauth_token=token)

        fake.expire_tokens()
        with pytest.raises(gidgethub.BadRequest) as expired:
            await gh.getitem(f"/repos/{REPO}/issues/12", oauth_token=token)
        assert expired.value.status_code == 401
        assert "Bad credentials" in str(expired.value)

        app = await gh.getitem(
            "/app", jwt=gidgethub.apps.get_jwt(app_id=str(APP_ID), private_key=pem)
        )
        assert app["slug"] == SLUG


def test_signature_headers_verify_with_gidgethub() -> None:
    body = json.dumps({"action": "created", "comment": {"body": "@relay-bot hi"}}).encode()
    headers = github_signature_headers(body, "hook-secret", event="issue_comment", delivery_id="d1")

    assert headers["X-GitHub-Event"] == "issue_comment"
    assert headers["X-GitHub-Delivery"] == "d1"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["X-Hub-Signature-256"].startswith("sha256=")
    lowered = {k.lower(): v for k, v in headers.items()}
    event = gidgethub.sansio.Event.from_http(lowered, body, secret="hook-secret")
    assert event.event == "issue_comment"
    assert event.delivery_id == "d1"
    assert event.data["comment"]["body"] == "@relay-bot hi"
    with pytest.raises(gidgethub.ValidationFailure):
        gidgethub.sansio.Event.from_http(lowered, body, secret="other-secret")
