"""GithubCallbackProcessor against the fake GitHub: one comment per reply, where it was asked."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bots.github.api import GithubApi
from bots.github.credentials import AppCredentials, GithubAppSource
from bots.github.reply import GITHUB_COMMENT_LIMIT, GithubCallbackProcessor
from bots.texts import comment_answer
from db.job_kinds import PermanentJobError, RetryableJobError
from db.secrets import SecretBox
from db.store import Store
from processors.base import Reply, ReplyStatus
from processors.confirmation import ApprovalRequest, HeldAction
from processors.context import ProcessorContext
from tests.support.fake_github import FakeGitHub

REPO = "acme/api"
INSTALLATION = 12
URL = "https://agent.example.test/conversations/abc"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_app(3, "relay-test")
        fake.add_installation(INSTALLATION, 3, account="acme", repositories=[REPO])
        fake.add_issue(REPO, 1, title="t", body="b", user="ada")
        yield fake


@pytest.fixture
async def github_context(
    context: ProcessorContext, github: FakeGitHub, store: Store
) -> AsyncIterator[ProcessorContext]:
    app = AppCredentials(
        app_id="3",
        slug="relay-test",
        private_key=github.app_by_slug("relay-test").private_key_pem,
        webhook_secret="s",
    )
    async with httpx.AsyncClient(timeout=10) as http:
        clients = GithubApi(http, GithubAppSource(store, SecretBox(None), app), github.api_url)
        yield dataclasses.replace(context, platforms={"github": clients})


def reply(summary: str = "All fixed.") -> Reply:
    return Reply(
        callback_id=1,
        conversation_id="abc",
        status=ReplyStatus.COMPLETED,
        summary=summary,
        url=URL,
        delivery_id="d1",
    )


def processor(**fields: object) -> GithubCallbackProcessor:
    return GithubCallbackProcessor(
        installation_id=INSTALLATION, repository=REPO, number=1, asker="ada", **fields
    )


def bodies(github: FakeGitHub) -> list[str]:
    return [c["body"] for c in github.comments(REPO, 1)]


async def test_the_answer_is_one_comment_mentioning_the_asker(
    github_context: ProcessorContext, github: FakeGitHub
) -> None:
    await processor().deliver(reply(), github_context)
    [body] = bodies(github)
    assert body.startswith("@ada All fixed.")
    assert f"[View the conversation]({URL})" in body


async def test_a_retry_after_a_lost_response_does_not_post_again(
    github_context: ProcessorContext, github: FakeGitHub
) -> None:
    sent = processor()
    await sent.deliver(reply(), github_context)
    # The job's next attempt runs with the state saved before the first post.
    await sent.model_copy(update={"reply_attempted": True}).deliver(reply(), github_context)
    assert len(bodies(github)) == 1


async def test_the_ack_comment_can_become_the_answer(
    github_context: ProcessorContext, github: FakeGitHub
) -> None:
    ack = github.add_comment(REPO, 1, "On it!", user="relay-test[bot]")
    await processor(ack_comment_id=ack["id"]).deliver(reply(), github_context)
    [body] = bodies(github)
    assert body.startswith("@ada All fixed.")


async def test_an_answer_over_the_limit_is_trimmed_with_the_link() -> None:
    body = comment_answer(reply("x" * (GITHUB_COMMENT_LIMIT + 10)), "ada", GITHUB_COMMENT_LIMIT)
    assert len(body) <= GITHUB_COMMENT_LIMIT
    assert f"The full conversation: {URL}" in body


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, PermanentJobError), (422, PermanentJobError), (429, RetryableJobError)],
)
async def test_failures_say_whether_to_try_again(
    github_context: ProcessorContext,
    github: FakeGitHub,
    status: int,
    error: type[Exception],
) -> None:
    github.fail_next("POST", rf"/repos/{REPO}/issues/1/comments", status)
    with pytest.raises(error):
        await processor().deliver(reply(), github_context)


async def test_without_github_configured_the_reply_fails_for_good(
    context: ProcessorContext,
) -> None:
    with pytest.raises(PermanentJobError, match="GitHub is not configured"):
        await processor().deliver(reply(), context)


def approval_request(**answer: object) -> ApprovalRequest:
    held = HeldAction("a1", "terminal", "make clean", "Start from scratch.")
    return ApprovalRequest(
        id=5, conversation_id="abc", actions=[held], url=URL, state="pending", **answer
    )


async def test_an_approval_request_is_posted_once_and_edited_to_its_answer(
    github_context: ProcessorContext, github: FakeGitHub
) -> None:
    posted = await processor().post_approval(approval_request(), github_context)
    again = await processor().post_approval(approval_request(), github_context)  # a retry

    assert again == posted
    [body] = bodies(github)
    assert "**terminal**: Start from scratch." in body and "```\nmake clean\n```" in body
    assert "Reply `@openhands approve` or `@openhands reject <reason>`." in body

    answered = approval_request(accept=False, answered_by="@ada", reason="not today")
    await processor().edit_approval(answered, posted, github_context)

    [body] = bodies(github)
    assert "**Rejected by @ada: not today**" in body
    assert "@openhands approve" not in body
    assert "make clean" in body and "<!-- agent-relay:approval:5 -->" in body
