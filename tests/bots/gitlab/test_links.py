"""bots/gitlab/links.py: a GitLab thread key as the status page links it, by the
project's path when the job that started the conversation still tells it."""

from __future__ import annotations

import uuid

from agent.events import START_JOB, StartPayload
from bots.gitlab.links import GitlabLinks, thread_link
from bots.links import Thread, ThreadLink
from db.jobs import JobQueue
from db.store import Store

GITLAB_URL = "https://gitlab.example.com"


def test_a_merge_request_with_its_projects_path_links_to_it() -> None:
    assert thread_link("42:merge_request:5", GITLAB_URL, "grp/sub/app") == ThreadLink(
        "grp/sub/app!5", f"{GITLAB_URL}/grp/sub/app/-/merge_requests/5"
    )


def test_without_the_path_an_issue_links_to_its_project_by_id() -> None:
    assert thread_link("43:issue:6", GITLAB_URL + "/", None) == ThreadLink(
        "project 43, issue #6", f"{GITLAB_URL}/projects/43"
    )


def test_a_key_that_is_not_a_thread_is_its_own_label_without_a_link() -> None:
    assert thread_link("43:epic:6", GITLAB_URL, None) == ThreadLink("43:epic:6", None)


async def test_paths_come_from_the_jobs_that_started_the_conversations(store: Store) -> None:
    tagged, untagged = uuid.uuid4().hex, uuid.uuid4().hex
    queue = JobQueue(store)
    tags = {"project": "grp/app"}
    await queue.enqueue(
        START_JOB, StartPayload(conversation_id=tagged, prompt="p", tags=tags), key=tagged
    )
    await queue.enqueue(START_JOB, StartPayload(conversation_id=untagged, prompt="p"), key=untagged)

    links = await GitlabLinks(GITLAB_URL).thread_links(
        store, [Thread("42:issue:1", tagged), Thread("43:issue:2", untagged)]
    )

    assert links == [
        ThreadLink("grp/app#1", f"{GITLAB_URL}/grp/app/-/issues/1"),
        ThreadLink("project 43, issue #2", f"{GITLAB_URL}/projects/43"),
    ]


async def test_no_threads_ask_nothing(store: Store) -> None:
    assert await GitlabLinks(GITLAB_URL).thread_links(store, []) == []
