"""GitlabCallbackProcessor against the fake GitLab: one note per reply, where it was asked."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bots.gitlab.api import GitlabApi, Place
from bots.gitlab.reply import NOTE_LIMIT, GitlabCallbackProcessor
from bots.gitlab.triggers import Noteable
from bots.markers import marker
from bots.texts import comment_answer
from db.callbacks import CallbackStatus, ConversationCallback, get_callback, insert_callback
from db.job_kinds import Job, PermanentJobError, RetryableJobError
from db.store import Store
from processors.base import REPLY_JOB, Reply, ReplyStatus
from processors.confirmation import ApprovalRequest, HeldAction
from processors.context import ProcessorContext
from processors.runtime import job_handlers
from tests.support.fake_gitlab import BOT_TOKEN, FakeGitlab
from tests.support.leased_jobs import leased_job

PROJECT_ID = 7
ASKER = 11
CONVERSATION_ID = "35d77258005d458983a8431e1722da40"
URL = f"https://agent.example.test/conversations/{CONVERSATION_ID}"


@pytest.fixture
def gitlab() -> Iterator[FakeGitlab]:
    with FakeGitlab() as fake:
        fake.add_project(PROJECT_ID, "acme/widgets")
        fake.add_user(ASKER, "ada")
        fake.add_issue(PROJECT_ID, 3, title="Flaky test", author_id=ASKER)
        yield fake


@pytest.fixture
async def gitlab_context(
    context: ProcessorContext, gitlab: FakeGitlab
) -> AsyncIterator[ProcessorContext]:
    async with httpx.AsyncClient(timeout=5) as http:
        api = GitlabApi(http, gitlab.url, BOT_TOKEN)
        yield dataclasses.replace(context, platforms={"gitlab": api})


async def gitlab_callback(
    store: Store, gitlab: FakeGitlab, *, in_thread: bool = True
) -> tuple[ConversationCallback, dict[str, Any]]:
    asked = gitlab.add_note(PROJECT_ID, "issue", 3, author_id=ASKER, body="@openhands fix it")
    processor = GitlabCallbackProcessor(
        project_id=PROJECT_ID,
        noteable=Noteable.ISSUE,
        iid=3,
        discussion_id=asked["discussion_id"] if in_thread else None,
        note_id=asked["id"] if in_thread else None,
        username="ada",
    )
    callback = await insert_callback(
        store, ConversationCallback.for_processor(CONVERSATION_ID, processor)
    )
    return callback, asked


def a_reply(callback: ConversationCallback, summary: str = "Fixed on `fix/flaky`.") -> Reply:
    assert callback.id is not None
    return Reply(
        callback_id=callback.id,
        conversation_id=CONVERSATION_ID,
        status=ReplyStatus.COMPLETED,
        summary=summary,
        url=URL,
        delivery_id="0123456789abcdef0123456789abcdef",
    )


async def deliver(context: ProcessorContext, reply: Reply) -> None:
    """As the reply job does it: the processor as stored in the row, each time."""
    callback = await get_callback(context.store, reply.callback_id)
    assert callback is not None
    await callback.get_processor().deliver(reply, context)


def reply_job(reply: Reply, *, attempts: int = 1) -> Job:
    return leased_job(1, REPLY_JOB.name, reply.model_dump(mode="json"), attempts=attempts)


async def test_the_answer_goes_into_the_asking_note_s_discussion_once(
    gitlab_context: ProcessorContext, gitlab: FakeGitlab, store: Store
) -> None:
    callback, asked = await gitlab_callback(store, gitlab)
    reply = a_reply(callback)

    await deliver(gitlab_context, reply)
    await deliver(gitlab_context, reply)  # the job ran again after a crash

    [answer] = gitlab.bot_notes(PROJECT_ID, "issue", 3)
    assert answer["discussion_id"] == asked["discussion_id"]
    assert answer["body"] == (
        f"@ada Fixed on `fix/flaky`.\n\n[View the conversation]({URL})"
        f"\n\n{marker('reply', str(callback.id))}"
    )
    stored = await get_callback(store, callback.id or 0)
    assert stored is not None
    assert stored.get_processor().reply_note_id == answer["id"]
    assert BOT_TOKEN not in stored.processor_json
    assert len(gitlab.calls("POST", r"/notes$")) == 1


async def test_an_answer_posted_by_an_attempt_that_lost_the_response_is_not_posted_again(
    gitlab_context: ProcessorContext, gitlab: FakeGitlab, store: Store
) -> None:
    callback, asked = await gitlab_callback(store, gitlab)
    reply = a_reply(callback)
    api = gitlab_context.platforms["gitlab"]
    place = Place(PROJECT_ID, Noteable.ISSUE, 3, asked["discussion_id"])
    # GitLab took the note, but the worker died before it saved the note's id.
    await api.post_note(place, f"@ada earlier\n\n{marker('reply', str(callback.id))}")

    await deliver(gitlab_context, reply)

    assert len(gitlab.bot_notes(PROJECT_ID, "issue", 3)) == 1


async def test_a_label_trigger_is_answered_with_a_new_note(
    gitlab_context: ProcessorContext, gitlab: FakeGitlab, store: Store
) -> None:
    callback, _ = await gitlab_callback(store, gitlab, in_thread=False)

    await deliver(gitlab_context, a_reply(callback))

    [answer] = gitlab.bot_notes(PROJECT_ID, "issue", 3)
    assert answer["type"] is None
    assert gitlab.calls("POST", r"/notes$")[0].path == f"/projects/{PROJECT_ID}/issues/3/notes"


async def test_a_rate_limit_is_retried_after_retry_after_and_posts_nothing(
    gitlab_context: ProcessorContext, gitlab: FakeGitlab, store: Store
) -> None:
    callback, _ = await gitlab_callback(store, gitlab)
    gitlab.fail_next("POST", r"/notes$", status=429, retry_after=3)
    gitlab.fail_next("POST", r"/notes$", status=502)

    with pytest.raises(RetryableJobError) as limited:
        await deliver(gitlab_context, a_reply(callback))
    with pytest.raises(RetryableJobError):
        await deliver(gitlab_context, a_reply(callback))
    await deliver(gitlab_context, a_reply(callback))

    assert limited.value.retry_after == 3
    assert [call.status for call in gitlab.calls("POST", r"/notes$")] == [429, 502, 201]
    assert len(gitlab.bot_notes(PROJECT_ID, "issue", 3)) == 1


@pytest.mark.parametrize("status", [403, 404])
async def test_a_refused_reply_fails_the_job_and_the_callback_says_why(
    gitlab_context: ProcessorContext, gitlab: FakeGitlab, store: Store, status: int
) -> None:
    callback, _ = await gitlab_callback(store, gitlab)
    gitlab.fail_next("POST", r"/notes$", status=status)
    on_reply = job_handlers(gitlab_context)[REPLY_JOB.name]

    with pytest.raises(PermanentJobError) as failed:
        await on_reply(reply_job(a_reply(callback)))

    assert f"HTTP {status}" in str(failed.value)
    assert "/discussions/" in str(failed.value)
    stored = await get_callback(store, callback.id or 0)
    assert stored is not None and stored.status is CallbackStatus.ERROR
    assert stored.status_reason == f"reply not delivered: {failed.value}"
    assert gitlab.bot_notes(PROJECT_ID, "issue", 3) == []


async def test_an_answer_too_long_for_one_note_is_trimmed_with_the_link(
    gitlab_context: ProcessorContext, gitlab: FakeGitlab, store: Store
) -> None:
    callback, _ = await gitlab_callback(store, gitlab)

    await deliver(gitlab_context, a_reply(callback, "x" * (NOTE_LIMIT + 10)))

    [answer] = gitlab.bot_notes(PROJECT_ID, "issue", 3)
    assert len(answer["body"]) <= NOTE_LIMIT
    assert f"The full conversation: {URL}" in answer["body"]
    assert answer["body"].endswith(marker("reply", str(callback.id)))


async def test_without_gitlab_configured_the_reply_fails_for_good(
    context: ProcessorContext, gitlab: FakeGitlab, store: Store
) -> None:
    callback, _ = await gitlab_callback(store, gitlab)

    with pytest.raises(PermanentJobError, match="GitLab is not configured"):
        await deliver(context, a_reply(callback))


def test_the_link_is_not_repeated_when_the_summary_has_it() -> None:
    reply = Reply(
        callback_id=1,
        conversation_id=CONVERSATION_ID,
        status=ReplyStatus.ERROR,
        summary=f"The agent stopped. Conversation: {URL}",
        url=URL,
        delivery_id="d",
    )
    assert (
        comment_answer(reply, "ada", NOTE_LIMIT) == f"@ada The agent stopped. Conversation: {URL}"
    )


async def test_an_approval_request_is_posted_once_in_the_discussion_and_edited_to_its_answer(
    gitlab_context: ProcessorContext, gitlab: FakeGitlab, store: Store
) -> None:
    callback, asked = await gitlab_callback(store, gitlab)
    processor = callback.get_processor()
    assert isinstance(processor, GitlabCallbackProcessor)
    held = HeldAction("a1", "terminal", "make clean", "")
    request = ApprovalRequest(
        id=6, conversation_id=CONVERSATION_ID, actions=[held], url=URL, state="pending"
    )

    posted = await processor.post_approval(request, gitlab_context)
    assert await processor.post_approval(request, gitlab_context) == posted

    [note] = [n for n in gitlab.bot_notes(PROJECT_ID, "issue", 3) if str(n["id"]) == posted]
    assert note["discussion_id"] == asked["discussion_id"]
    assert "`@openhands approve`" in note["body"]
    answered = dataclasses.replace(request, state="approved", accept=True, answered_by="@ada")
    await processor.edit_approval(answered, posted, gitlab_context)
    [note] = [n for n in gitlab.bot_notes(PROJECT_ID, "issue", 3) if str(n["id"]) == posted]
    assert "**Approved by @ada.**" in note["body"]
    assert marker("approval", "6") in note["body"]
