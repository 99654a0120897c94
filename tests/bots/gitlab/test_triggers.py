"""Which GitLab deliveries trigger the agent, on payloads shaped as GitLab documents them.

The bodies below follow the examples of GitLab's "Webhook events" page (Comment
events on an issue, a merge request, a commit and a snippet; Work item (issue) and
Merge request events), trimmed of fields agent-relay never reads, with the
`discussion_id` real note deliveries carry.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bots.gitlab.triggers import (
    TRIGGER_EVENTS,
    GitlabTrigger,
    Noteable,
    label_added,
    thread_key,
    trigger_of,
)

MENTION = "@openhands"
LABEL = "openhands"
BOT_USER_ID = 900

PROJECT = {
    "id": 5,
    "name": "Gitlab Test",
    "description": "Aut reprehenderit ut est.",
    "web_url": "http://example.com/gitlab-org/gitlab-test",
    "avatar_url": None,
    "git_ssh_url": "git@example.com:gitlab-org/gitlab-test.git",
    "git_http_url": "http://example.com/gitlab-org/gitlab-test.git",
    "namespace": "Gitlab Org",
    "visibility_level": 10,
    "path_with_namespace": "gitlab-org/gitlab-test",
    "default_branch": "master",
    "homepage": "http://example.com/gitlab-org/gitlab-test",
    "url": "http://example.com/gitlab-org/gitlab-test.git",
    "ssh_url": "git@example.com:gitlab-org/gitlab-test.git",
    "http_url": "http://example.com/gitlab-org/gitlab-test.git",
}
USER = {
    "id": 1,
    "name": "Administrator",
    "username": "root",
    "avatar_url": "http://www.gravatar.com/avatar/e64c7d89f26bd1972efa854d13d7dd61?s=40",
    "email": "admin@example.com",
}
LABEL_OBJECT = {
    "id": 206,
    "title": "openhands",
    "color": "#ffffff",
    "project_id": 5,
    "created_at": "2013-12-03T17:15:43Z",
    "updated_at": "2013-12-03T17:15:43Z",
    "template": False,
    "description": "Hand the issue to the agent",
    "type": "ProjectLabel",
    "group_id": 41,
}
OTHER_LABEL = {**LABEL_OBJECT, "id": 205, "title": "Platform"}


def note_attributes(note_id: int, text: str, noteable_type: str, url: str) -> dict[str, Any]:
    return {
        "id": note_id,
        "note": text,
        "noteable_type": noteable_type,
        "author_id": 1,
        "created_at": "2015-05-17 17:06:40 UTC",
        "updated_at": "2015-05-17 17:06:40 UTC",
        "project_id": 5,
        "attachment": None,
        "line_code": None,
        "commit_id": "",
        "noteable_id": 92,
        "system": False,
        "st_diff": None,
        "discussion_id": "6a9c1750b37d513a43987b574953fceb50b03ce7",
        "type": None,
        "action": "create",
        "url": url,
    }


def issue_note(text: str = "@openhands why does the build fail?") -> dict[str, Any]:
    """Comment on an issue (Note Hook)."""
    return {
        "object_kind": "note",
        "event_type": "note",
        "user": USER,
        "project_id": 5,
        "project": PROJECT,
        "repository": {
            "name": "diaspora",
            "url": "git@example.com:mike/diaspora.git",
            "description": "",
            "homepage": "http://example.com/mike/diaspora",
        },
        "object_attributes": note_attributes(
            1241, text, "Issue", "http://example.com/gitlab-org/gitlab-test/issues/17#note_1241"
        ),
        "issue": {
            "id": 92,
            "title": "test",
            "assignee_ids": [],
            "assignee_id": None,
            "author_id": 1,
            "project_id": 5,
            "created_at": "2015-04-12 14:53:17 UTC",
            "updated_at": "2015-04-26 08:28:42 UTC",
            "position": 0,
            "branch_name": None,
            "description": "test",
            "milestone_id": None,
            "state": "closed",
            "iid": 17,
            "labels": [OTHER_LABEL],
        },
    }


def merge_request_note(text: str = "@openhands please review this") -> dict[str, Any]:
    """Comment on a merge request (Note Hook)."""
    payload = issue_note(text)
    del payload["issue"]
    payload["object_attributes"] = note_attributes(
        1244,
        text,
        "MergeRequest",
        "http://example.com/gitlab-org/gitlab-test/merge_requests/1#note_1244",
    )
    payload["merge_request"] = {
        "id": 7,
        "target_branch": "markdown",
        "source_branch": "master",
        "source_project_id": 5,
        "author_id": 8,
        "assignee_id": 28,
        "title": "Tempora et eos debitis quae laborum et.",
        "created_at": "2015-03-01 20:12:53 UTC",
        "updated_at": "2015-03-21 18:27:27 UTC",
        "milestone_id": 11,
        "state": "opened",
        "merge_status": "cannot_be_merged",
        "target_project_id": 5,
        "iid": 1,
        "description": "Et voluptas corrupti assumenda temporibus.",
        "position": 0,
        "labels": [],
        "source": PROJECT,
        "target": PROJECT,
        "work_in_progress": False,
        "draft": False,
        "detailed_merge_status": "checking",
    }
    return payload


def commit_note(text: str = "@openhands what does this commit do?") -> dict[str, Any]:
    payload = issue_note(text)
    del payload["issue"]
    payload["object_attributes"] = {
        **note_attributes(
            1243,
            text,
            "Commit",
            "http://example.com/gitlab-org/gitlab-test/commit/cfe32cf6#note_1243",
        ),
        "commit_id": "cfe32cf61b73a0d5e9f13e774abde7ff789b1660",
        "noteable_id": None,
    }
    payload["commit"] = {
        "id": "cfe32cf61b73a0d5e9f13e774abde7ff789b1660",
        "message": "Add submodule",
        "timestamp": "2014-02-27T10:06:20+02:00",
        "url": "http://example.com/gitlab-org/gitlab-test/commit/cfe32cf6",
        "author": {"name": "Example User", "email": "user@example.com"},
    }
    return payload


def snippet_note(text: str = "@openhands is this snippet right?") -> dict[str, Any]:
    payload = issue_note(text)
    del payload["issue"]
    payload["object_attributes"] = note_attributes(
        1245, text, "Snippet", "http://example.com/gitlab-org/gitlab-test/-/snippets/53#note_1245"
    )
    payload["snippet"] = {
        "id": 53,
        "title": "test",
        "content": "puts 'Hello world'",
        "author_id": 1,
        "project_id": 5,
        "file_name": "test.rb",
        "type": "ProjectSnippet",
        "visibility_level": 0,
    }
    return payload


def issue_update(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> dict[str, Any]:
    """An Issue Hook of an update that changed the labels."""
    return {
        "object_kind": "issue",
        "event_type": "issue",
        "user": USER,
        "project": {**PROJECT, "id": 1},
        "object_attributes": {
            "id": 301,
            "title": "New API: create/update/delete file",
            "assignee_ids": [51],
            "assignee_id": 51,
            "author_id": 51,
            "project_id": 1,
            "created_at": "2013-12-03T17:15:43Z",
            "updated_at": "2013-12-03T17:15:43Z",
            "updated_by_id": 1,
            "description": "Create new API for manipulations with repository",
            "confidential": False,
            "type": "Issue",
            "iid": 23,
            "url": "http://example.com/diaspora/issues/23",
            "state": "opened",
            "action": "update",
            "labels": current,
        },
        "labels": current,
        "changes": {
            "updated_by_id": {"previous": None, "current": 1},
            "updated_at": {
                "previous": "2017-09-15 16:50:55 UTC",
                "current": "2017-09-15 16:52:00 UTC",
            },
            "labels": {"previous": previous, "current": current},
        },
    }


def merge_request_update(
    previous: list[dict[str, Any]], current: list[dict[str, Any]]
) -> dict[str, Any]:
    payload = issue_update(previous, current)
    payload["object_kind"] = payload["event_type"] = "merge_request"
    payload["object_attributes"] = {
        "id": 99,
        "iid": 1,
        "target_branch": "master",
        "source_branch": "ms-viewport",
        "source_project_id": 14,
        "author_id": 51,
        "title": "MS-Viewport",
        "state": "opened",
        "url": "http://example.com/diaspora/merge_requests/1",
        "action": "update",
        "labels": current,
    }
    return payload


def decide(event: str, payload: dict[str, Any]) -> GitlabTrigger | None:
    return trigger_of(event, payload, mention=MENTION, label=LABEL, bot_user_id=BOT_USER_ID)


# -- notes --------------------------------------------------------------------------------


def test_a_mention_in_an_issue_note_triggers_in_its_discussion() -> None:
    trigger = decide("Note Hook", issue_note("@openhands why does the build fail?"))

    assert trigger == GitlabTrigger(
        project_id=5,
        project_path="gitlab-org/gitlab-test",
        noteable=Noteable.ISSUE,
        iid=17,
        user_id=1,
        username="root",
        text="why does the build fail?",
        note_id=1241,
        discussion_id="6a9c1750b37d513a43987b574953fceb50b03ce7",
    )
    assert trigger.thread_key == "5:issue:17"
    assert not trigger.is_label


def test_a_mention_in_a_merge_request_note_triggers() -> None:
    trigger = decide("Note Hook", merge_request_note())

    assert trigger is not None
    assert trigger.noteable is Noteable.MERGE_REQUEST
    assert (trigger.iid, trigger.note_id) == (1, 1244)
    assert trigger.thread_key == "5:merge_request:1"
    assert trigger.text == "please review this"


def test_a_confidential_note_triggers_too() -> None:
    payload = issue_note()
    payload["event_type"] = "confidential_note"

    assert decide("Confidential Note Hook", payload) is not None


def test_a_note_of_an_instance_older_than_the_action_field_triggers() -> None:
    payload = issue_note()
    del payload["object_attributes"]["action"]

    assert decide("Note Hook", payload) is not None


def test_an_edited_note_is_ignored() -> None:
    payload = issue_note()
    payload["object_attributes"]["action"] = "update"

    assert decide("Note Hook", payload) is None


def test_a_system_note_is_ignored() -> None:
    payload = issue_note("@openhands added ~openhands label")
    payload["object_attributes"]["system"] = True

    assert decide("Note Hook", payload) is None


@pytest.mark.parametrize("build", [commit_note, snippet_note], ids=["commit", "snippet"])
def test_notes_on_commits_and_snippets_are_ignored(build: Any) -> None:
    assert decide("Note Hook", build()) is None


@pytest.mark.parametrize(
    "text",
    [
        "the build fails again",
        "> @openhands why does the build fail?\n\nsame here",
        "run `@openhands fix` to ask it",
        "```\n@openhands fix it\n```",
        "ping @openhands-bot about it",
        "mail me@openhands.dev",
    ],
    ids=["no-mention", "quoted", "inline-code", "code-block", "other-user", "e-mail"],
)
def test_a_note_without_a_real_mention_is_ignored(text: str) -> None:
    assert decide("Note Hook", issue_note(text)) is None


def test_the_mention_is_found_in_any_case() -> None:
    trigger = decide("Note Hook", issue_note("@OpenHands look at this"))
    assert trigger is not None and trigger.text == "look at this"


def test_a_bare_mention_triggers_with_an_empty_request() -> None:
    trigger = decide("Note Hook", issue_note("@openhands"))
    assert trigger is not None and trigger.text == ""


def test_the_bot_s_own_note_is_ignored() -> None:
    payload = issue_note("On it! @openhands will answer here.")
    payload["user"] = {**USER, "id": BOT_USER_ID, "username": "openhands"}
    payload["object_attributes"]["author_id"] = BOT_USER_ID

    assert decide("Note Hook", payload) is None
    # The inbound route does not know the bot's id before a job asked for it.
    assert trigger_of("Note Hook", payload, mention=MENTION, label=LABEL) is not None


def test_project_and_group_token_bots_are_ignored() -> None:
    for username in ("project_5_bot_3f1d2c", "group_41_bot", "project_278964_bot"):
        payload = issue_note()
        payload["user"] = {**USER, "id": 77, "username": username}
        assert decide("Note Hook", payload) is None, username


def test_the_author_id_stands_in_for_a_payload_without_user_id() -> None:
    payload = issue_note()
    payload["user"] = {key: value for key, value in USER.items() if key != "id"}

    trigger = decide("Note Hook", payload)
    assert trigger is not None and trigger.user_id == 1


def test_a_reply_in_a_thread_keeps_the_thread_s_discussion() -> None:
    payload = issue_note()
    payload["object_attributes"]["type"] = "DiscussionNote"
    payload["object_attributes"]["discussion_id"] = "0f8e2a"

    trigger = decide("Note Hook", payload)
    assert trigger is not None and trigger.discussion_id == "0f8e2a"


def test_a_note_without_discussion_id_is_answered_with_a_new_note() -> None:
    payload = issue_note()
    del payload["object_attributes"]["discussion_id"]

    trigger = decide("Note Hook", payload)
    assert trigger is not None and trigger.discussion_id is None


@pytest.mark.parametrize(
    "broken",
    [
        lambda p: p.pop("issue"),
        lambda p: p.pop("project"),
        lambda p: p["object_attributes"].pop("id"),
        lambda p: p["object_attributes"].update(note=None),
        lambda p: p.update(object_attributes="not an object"),
    ],
    ids=["no-issue", "no-project", "no-note-id", "no-text", "garbage"],
)
def test_an_incomplete_note_payload_is_ignored(broken: Any) -> None:
    payload = copy.deepcopy(issue_note())
    broken(payload)
    assert decide("Note Hook", payload) is None


# -- labels -------------------------------------------------------------------------------


def test_the_trigger_label_newly_added_to_an_issue_triggers() -> None:
    trigger = decide("Issue Hook", issue_update([OTHER_LABEL], [OTHER_LABEL, LABEL_OBJECT]))

    assert trigger == GitlabTrigger(
        project_id=1,
        project_path="gitlab-org/gitlab-test",
        noteable=Noteable.ISSUE,
        iid=23,
        user_id=1,
        username="root",
        text="",
    )
    assert trigger.is_label
    assert trigger.thread_key == "1:issue:23"


def test_the_trigger_label_on_a_confidential_issue_triggers() -> None:
    payload = issue_update([], [LABEL_OBJECT])
    payload["object_attributes"]["confidential"] = True

    assert decide("Confidential Issue Hook", payload) is not None


def test_the_trigger_label_newly_added_to_a_merge_request_triggers() -> None:
    trigger = decide("Merge Request Hook", merge_request_update([], [LABEL_OBJECT]))

    assert trigger is not None
    assert trigger.noteable is Noteable.MERGE_REQUEST
    assert trigger.thread_key == "1:merge_request:1"


def test_labels_are_compared_ignoring_case() -> None:
    shouting = {**LABEL_OBJECT, "title": "OpenHands"}
    assert decide("Issue Hook", issue_update([], [shouting])) is not None


@pytest.mark.parametrize(
    ("previous", "current"),
    [
        ([LABEL_OBJECT], [LABEL_OBJECT, OTHER_LABEL]),  # had it already
        ([LABEL_OBJECT], []),  # removed
        ([], [OTHER_LABEL]),  # another label
    ],
    ids=["already-there", "removed", "other-label"],
)
def test_other_label_changes_are_ignored(
    previous: list[dict[str, Any]], current: list[dict[str, Any]]
) -> None:
    assert decide("Issue Hook", issue_update(previous, current)) is None


def test_an_update_without_label_changes_is_ignored_even_when_the_issue_has_the_label() -> None:
    payload = issue_update([], [LABEL_OBJECT])
    del payload["changes"]["labels"]

    assert not label_added(payload, LABEL)
    assert decide("Issue Hook", payload) is None


def test_the_label_added_by_the_bot_itself_is_ignored() -> None:
    payload = issue_update([], [LABEL_OBJECT])
    payload["user"] = {**USER, "id": BOT_USER_ID, "username": "openhands"}

    assert decide("Issue Hook", payload) is None


def test_an_issue_hook_is_not_read_as_a_merge_request_hook_s_object() -> None:
    # The event name decides the route; object_kind decides what the iid names.
    payload = merge_request_update([], [LABEL_OBJECT])
    trigger = decide("Issue Hook", payload)
    assert trigger is not None and trigger.noteable is Noteable.MERGE_REQUEST


# -- everything else ----------------------------------------------------------------------


@pytest.mark.parametrize("event", ["Push Hook", "Pipeline Hook", "Emoji Hook", "Job Hook"])
def test_other_events_never_trigger(event: str) -> None:
    assert decide(event, issue_note()) is None
    assert event not in TRIGGER_EVENTS


def test_thread_keys_follow_the_design() -> None:
    assert thread_key(42, Noteable.ISSUE, 7) == "42:issue:7"
    assert thread_key(42, Noteable.MERGE_REQUEST, 7) == "42:merge_request:7"
    assert Noteable.MERGE_REQUEST.path == "merge_requests"
    assert Noteable.ISSUE.path == "issues"
