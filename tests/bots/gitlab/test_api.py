"""GitLab REST calls over real HTTP against the fake GitLab, and what failures mean for a job."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bots.gitlab.api import (
    DEVELOPER_ACCESS,
    GitlabApi,
    GitlabRefused,
    GitlabThread,
    Place,
    gitlab_errors,
    project_ref,
)
from bots.gitlab.triggers import Noteable
from bots.markers import marker, post_once
from db.job_kinds import PermanentJobError, RetryableJobError
from tests.support.fake_gitlab import BOT_TOKEN, BOT_USER_ID, FakeGitlab

PROJECT_ID = 7
ASKER = 11
REPORTER = 12


@pytest.fixture
def gitlab() -> Iterator[FakeGitlab]:
    with FakeGitlab() as fake:
        fake.add_project(PROJECT_ID, "acme/widgets")
        fake.add_user(ASKER, "ada")
        fake.add_user(REPORTER, "rita")
        fake.set_access(PROJECT_ID, ASKER, DEVELOPER_ACCESS)
        fake.set_access(PROJECT_ID, REPORTER, 20)
        fake.add_issue(PROJECT_ID, 3, title="Flaky test", description="It fails.", author_id=ASKER)
        yield fake


@pytest.fixture
async def api(gitlab: FakeGitlab) -> AsyncIterator[GitlabApi]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield GitlabApi(http, gitlab.url, BOT_TOKEN)


ISSUE = Place(PROJECT_ID, Noteable.ISSUE, 3)


async def failure_of(api: GitlabApi) -> Exception:
    with pytest.raises((RetryableJobError, PermanentJobError)) as raised:
        await api.noteable(ISSUE)
    return raised.value


# -- errors ---------------------------------------------------------------------------------


async def test_a_rate_limit_is_retried_after_the_time_gitlab_asks(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    gitlab.fail_next("GET", r"/issues/3$", status=429, retry_after=7)

    outcome = await failure_of(api)

    assert isinstance(outcome, RetryableJobError)
    assert outcome.retry_after == 7
    assert str(outcome) == "gitlab GET /projects/7/issues/3: HTTP 429 Retry later"


async def test_a_rate_limit_without_retry_after_waits_for_ratelimit_reset(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    gitlab.fail_next("GET", r"/issues/3$", status=429, ratelimit_reset=time.time() + 30)

    outcome = await failure_of(api)

    assert isinstance(outcome, RetryableJobError)
    assert outcome.retry_after is not None and 25 <= outcome.retry_after <= 31


async def test_a_403_with_the_quota_spent_is_a_rate_limit(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    gitlab.fail_next("GET", r"/issues/3$", status=403, ratelimit_reset=time.time() + 10)

    outcome = await failure_of(api)

    assert isinstance(outcome, RetryableJobError)
    assert outcome.retry_after is not None and outcome.retry_after <= 11


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(gitlab: FakeGitlab, api: GitlabApi, status: int) -> None:
    gitlab.fail_next("GET", r"/issues/3$", status=status)

    outcome = await failure_of(api)

    assert isinstance(outcome, RetryableJobError)
    assert outcome.retry_after is None
    assert f"HTTP {status}" in str(outcome)


@pytest.mark.parametrize(
    ("status", "reason"), [(403, "403 Forbidden"), (404, "404 Not found"), (422, "bad note")]
)
async def test_other_refusals_fail_the_job_for_good_with_a_readable_message(
    gitlab: FakeGitlab, api: GitlabApi, status: int, reason: str
) -> None:
    gitlab.fail_next("GET", r"/issues/3$", status=status, message=reason)

    outcome = await failure_of(api)

    assert isinstance(outcome, PermanentJobError)
    assert str(outcome) == f"gitlab GET /projects/7/issues/3: HTTP {status} {reason}"
    assert BOT_TOKEN not in str(outcome)


async def test_a_wrong_token_is_a_permanent_failure_that_does_not_show_the_token(
    gitlab: FakeGitlab,
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        api = GitlabApi(http, gitlab.url, "glpat-wrong-token")
        with pytest.raises(PermanentJobError) as raised:
            await api.bot_user()
    assert str(raised.value) == "gitlab GET /user: HTTP 401 401 Unauthorized"
    assert "glpat" not in str(raised.value)


async def test_timeouts_and_unreachable_servers_are_retried() -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(time_out)) as http:
        with pytest.raises(RetryableJobError, match="ReadTimeout"):
            await GitlabApi(http, "https://gitlab.invalid", BOT_TOKEN).bot_user()
    async with httpx.AsyncClient(timeout=2) as http:
        with pytest.raises(RetryableJobError, match="ConnectError"):
            await GitlabApi(http, "http://127.0.0.1:9", BOT_TOKEN).bot_user()


async def test_a_redirect_is_a_permanent_failure() -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://elsewhere.invalid/"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(redirect)) as http:
        with pytest.raises(PermanentJobError, match="HTTP 302"):
            await GitlabApi(http, "https://gitlab.invalid", BOT_TOKEN).bot_user()


async def test_a_body_that_is_not_json_is_retried() -> None:
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>", headers={"Content-Type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(html)) as http:
        with pytest.raises(RetryableJobError, match="not JSON"):
            await GitlabApi(http, "https://gitlab.invalid", BOT_TOKEN).bot_user()


async def test_gitlab_s_field_errors_are_spelled_out() -> None:
    with pytest.raises(PermanentJobError) as raised:
        async with gitlab_errors("POST /projects/7/issues/3/notes"):
            raise GitlabRefused(
                422, "note is too long (maximum is 1000000 characters)", {"X-Request-Id": "1"}
            )
    assert "note is too long" in str(raised.value)


# -- calls ----------------------------------------------------------------------------------


async def test_the_bot_user_is_asked_once(gitlab: FakeGitlab, api: GitlabApi) -> None:
    assert api.known_bot_user_id is None

    first = await api.bot_user()
    second = await api.bot_user()

    assert first == second
    assert first.id == BOT_USER_ID == api.known_bot_user_id
    assert len(gitlab.calls("GET", r"^/user$")) == 1
    # gidgetlab sends the token as a bearer token.
    assert {call.token for call in gitlab.calls()} == {BOT_TOKEN}


async def test_access_levels_come_from_members_all(api: GitlabApi) -> None:
    assert await api.access_level(PROJECT_ID, ASKER) == DEVELOPER_ACCESS
    assert await api.access_level(PROJECT_ID, REPORTER) == 20
    assert await api.access_level(PROJECT_ID, 4040) == 0


async def test_an_award_already_given_is_fine(gitlab: FakeGitlab, api: GitlabApi) -> None:
    note = gitlab.add_note(PROJECT_ID, "issue", 3, author_id=ASKER, body="@openhands hi")

    await api.award_emoji(ISSUE, "eyes", note_id=note["id"])
    await api.award_emoji(ISSUE, "eyes", note_id=note["id"])
    await api.award_emoji(ISSUE, "eyes")

    assert gitlab.note_awards(note["id"]) == [("eyes", BOT_USER_ID)]
    assert gitlab.item_awards(PROJECT_ID, "issue", 3) == [("eyes", BOT_USER_ID)]


async def test_an_award_on_a_missing_note_fails(api: GitlabApi) -> None:
    with pytest.raises(PermanentJobError, match="HTTP 404"):
        await api.award_emoji(ISSUE, "eyes", note_id=999_999)


async def test_notes_go_into_the_discussion_or_onto_the_issue(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    asked = gitlab.add_note(PROJECT_ID, "issue", 3, author_id=ASKER, body="@openhands hi")
    in_thread = Place(PROJECT_ID, Noteable.ISSUE, 3, asked["discussion_id"])

    reply = await api.post_note(in_thread, "a reply")
    separate = await api.post_note(ISSUE, "a note")

    thread = await api.discussion_notes(in_thread)
    assert [note["id"] for note in thread] == [asked["id"], reply["id"]]
    assert separate["id"] not in [note["id"] for note in thread]
    newest = await api.newest_notes(ISSUE, 2)
    assert [note["id"] for note in newest] == [separate["id"], reply["id"]]


async def test_the_bot_edits_its_own_note_and_no_one_else_s(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    asked = gitlab.add_note(PROJECT_ID, "issue", 3, author_id=ASKER, body="@openhands hi")
    in_thread = Place(PROJECT_ID, Noteable.ISSUE, 3, asked["discussion_id"])
    status = await api.post_note(in_thread, "On it!")

    await api.edit_note(in_thread, status["id"], "Done in 12s.")

    [edited] = gitlab.bot_notes(PROJECT_ID, "issue", 3)
    assert edited["body"] == "Done in 12s."
    assert gitlab.calls("PUT", rf"/issues/3/notes/{status['id']}$")
    with pytest.raises(PermanentJobError, match="HTTP 403"):
        await api.edit_note(ISSUE, asked["id"], "not mine")
    with pytest.raises(PermanentJobError, match="HTTP 404"):
        await api.edit_note(ISSUE, 999_999, "gone")
    assert gitlab.notes(PROJECT_ID, "issue", 3)[0]["body"] == "@openhands hi"


async def test_post_once_finds_the_note_an_earlier_attempt_posted(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    asked = gitlab.add_note(PROJECT_ID, "issue", 3, author_id=ASKER, body="@openhands hi")
    in_thread = Place(PROJECT_ID, Noteable.ISSUE, 3, asked["discussion_id"])
    mark = marker("ack", "note-1")

    thread, issue = GitlabThread(api, in_thread), GitlabThread(api, ISSUE)
    first = await post_once(thread, "On it!", mark)
    again = await post_once(thread, "On it!", mark)
    on_issue = await post_once(issue, "On it!", marker("ack", "label-1"))
    on_issue_again = await post_once(issue, "On it!", marker("ack", "label-1"))

    assert first == again and on_issue == on_issue_again
    assert len(gitlab.calls("POST", r"/notes$")) == 2
    [posted, _] = gitlab.bot_notes(PROJECT_ID, "issue", 3)
    assert posted["body"] == f"On it!\n\n{mark}"


async def test_a_marker_in_someone_else_s_note_is_not_the_bot_s(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    mark = marker("ack", "note-2")
    gitlab.add_note(PROJECT_ID, "issue", 3, author_id=ASKER, body=f"copied {mark}")

    assert await api.find_marked(ISSUE, mark) is None


async def test_project_paths_are_url_encoded(gitlab: FakeGitlab, api: GitlabApi) -> None:
    assert project_ref("acme/widgets") == "acme%2Fwidgets"
    assert project_ref(7) == "7"

    created = await api.add_project_hook("acme/widgets", {"url": "https://relay.test/x"})
    edited = await api.edit_project_hook(7, created["id"], {"note_events": True})

    assert [hook["id"] for hook in await api.project_hooks("acme/widgets")] == [created["id"]]
    assert edited["note_events"] is True
    assert gitlab.calls("POST", r"/hooks$")[0].path == "/projects/acme/widgets/hooks"


async def test_the_fake_also_takes_private_token_headers(gitlab: FakeGitlab) -> None:
    async with httpx.AsyncClient(base_url=f"{gitlab.url}/api/v4", timeout=5) as http:
        assert (await http.get("/user", headers={"PRIVATE-TOKEN": BOT_TOKEN})).status_code == 200
        assert (await http.get("/user", headers={"PRIVATE-TOKEN": "nope"})).status_code == 401
        assert (await http.get("/user")).status_code == 401
