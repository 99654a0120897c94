"""processors/outcome.py: what a turn pushed becomes, once: a pull request opened,
commits pushed to it, or nothing; the reply's first line says which."""

from __future__ import annotations

import dataclasses

import pytest

from agent.checkout import ChangeRequest, CheckoutMode, Requester, WorkspaceRequest
from db.store import now
from db.workspaces import Workspace, get_workspace, insert_workspace
from processors.context import ProcessorContext
from processors.hosts import WorkspacePolicy
from processors.outcome import turn_outcome
from tests.support.fake_host import RecordingHost

CONVERSATION = "feed0000" * 4
BRANCH = "openhands/12-feed0000"


@pytest.fixture
def host() -> RecordingHost:
    return RecordingHost()


@pytest.fixture
def relay(context: ProcessorContext, host: RecordingHost) -> ProcessorContext:
    return dataclasses.replace(context, hosts={"github": host})


async def checked_out(
    context: ProcessorContext,
    mode: CheckoutMode = CheckoutMode.NEW_BRANCH,
    *,
    platform: str = "github",
    **fields: object,
) -> None:
    request = WorkspaceRequest(
        repository="acme/api",
        host=platform,
        locator="42",
        issue_number=12,
        title="Keep time zones in the date parser",
        requester=Requester(login="alice", platform=platform),
        thread_url="https://github.example.test/acme/api/issues/12",
    )
    await insert_workspace(
        context.store,
        Workspace(
            conversation_id=CONVERSATION,
            host=platform,
            repository="acme/api",
            locator="42",
            mode=mode.value,
            working_dir="w",
            base_branch="main",
            branch=BRANCH,
            plan="{}",
            request=request.model_dump_json(),
            capability_hash="x",
            checked_out_at=now(),
            **fields,  # type: ignore[arg-type]
        ),
    )


async def test_new_commits_open_one_draft_pull_request(
    relay: ProcessorContext, host: RecordingHost
) -> None:
    await checked_out(relay)
    host.push(BRANCH, 2)

    outcome = await turn_outcome(relay, CONVERSATION, "Fixed the parser.", callback_id=1)
    again = await turn_outcome(relay, CONVERSATION, "Fixed the parser.", callback_id=1)

    assert outcome is not None and again is not None
    url = "https://git.example.test/acme/api/pull/34"
    assert outcome.headline == (
        f"Opened draft PR #34: Keep time zones in the date parser {url}\n"
        f"Branch `{BRANCH}`, +20 -2 in 2 files."
    )
    assert outcome.pull_request == {"url": url, "number": 34, "branch": BRANCH, "created": True}
    assert again.pull_request == outcome.pull_request  # a retried reply says the same
    [opened] = host.opened
    assert opened["draft"] is True and opened["reviewer"] == "alice"
    body = str(opened["body"])
    assert body.startswith("Fixed the parser.") and "Fixes #12" in body
    assert "Asked by @alice in https://github.example.test/acme/api/issues/12." in body
    assert f"<!-- agent-relay:change-request:{CONVERSATION} -->" in body


async def test_gitlab_names_merge_requests_its_own_way(context: ProcessorContext) -> None:
    gitlab = RecordingHost(
        name="gitlab",
        token_name="GITLAB_TOKEN",
        change_request_label="MR",
        change_request_sign="!",
        closes_keyword="Closes",
    )
    relay = dataclasses.replace(context, hosts={"gitlab": gitlab})
    await checked_out(relay, platform="gitlab")
    gitlab.push(BRANCH, 1)

    opened = await turn_outcome(relay, CONVERSATION, "Fixed.", callback_id=1)
    gitlab.push(BRANCH, 1)
    pushed = await turn_outcome(relay, CONVERSATION, "Again.", callback_id=2)

    assert opened is not None and pushed is not None
    assert opened.headline.startswith("Opened draft MR !34: ")
    assert "(MR !34: " in pushed.headline
    # An issue is still "#12" on GitLab.
    assert "Closes #12" in str(gitlab.opened[0]["body"])


async def test_a_follow_up_pushes_to_the_same_request(
    relay: ProcessorContext, host: RecordingHost
) -> None:
    await checked_out(relay)
    host.push(BRANCH, 1)
    await turn_outcome(relay, CONVERSATION, "First.", callback_id=1)
    host.push(BRANCH, 2)

    outcome = await turn_outcome(relay, CONVERSATION, "Second.", callback_id=2)

    assert outcome is not None
    assert outcome.headline.startswith(
        f"Pushed 2 commits to `{BRANCH}` (PR #34: https://git.example.test/acme/api/pull/34)"
    )
    assert outcome.pull_request is not None and outcome.pull_request["created"] is False
    assert len(host.opened) == 1


async def test_nothing_pushed_says_so(relay: ProcessorContext, host: RecordingHost) -> None:
    await checked_out(relay)

    outcome = await turn_outcome(relay, CONVERSATION, "Nothing to change.", callback_id=1)

    assert outcome is not None and outcome.headline == "No changes were pushed."
    assert outcome.pull_request is None and host.opened == []


async def test_an_open_request_for_the_branch_is_found_not_opened_again(
    relay: ProcessorContext, host: RecordingHost
) -> None:
    await checked_out(relay)
    host.push(BRANCH, 1)
    host.requests[BRANCH] = ChangeRequest(number=7, url="https://x.test/pull/7", title="t")

    outcome = await turn_outcome(relay, CONVERSATION, "Done.", callback_id=1)

    assert outcome is not None and host.opened == []
    assert outcome.pull_request == {
        "url": "https://x.test/pull/7",
        "number": 7,
        "branch": BRANCH,
        "created": False,
    }
    row = await get_workspace(relay.store, CONVERSATION)
    assert row is not None and row.change_request is not None


async def test_ready_requests_and_text_only_answers(
    relay: ProcessorContext, host: RecordingHost
) -> None:
    ready = dataclasses.replace(relay, workspace_policy=WorkspacePolicy(pull_requests="ready"))
    await checked_out(ready)
    host.push(BRANCH, 1)
    outcome = await turn_outcome(ready, CONVERSATION, "Done.", callback_id=1)
    assert outcome is not None and outcome.headline.startswith("Opened PR #34")
    assert host.opened[0]["draft"] is False


async def test_no_outcome_without_a_checkout_or_when_read_only(
    relay: ProcessorContext, host: RecordingHost
) -> None:
    assert await turn_outcome(relay, CONVERSATION, "Done.", callback_id=1) is None
    await checked_out(relay, CheckoutMode.READ_ONLY)
    assert await turn_outcome(relay, CONVERSATION, "Done.", callback_id=1) is None
