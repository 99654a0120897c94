"""Links to GitLab threads: the issue or merge request, by the project's path when
the job that started the conversation still tells it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote

from agent.events import START_JOB
from bots.gitlab import PLATFORM
from bots.gitlab.triggers import Noteable
from bots.links import Thread, ThreadLink
from db.store import Store

_GITLAB_KEY = re.compile(r"(?P<project>\d+):(?P<kind>issue|merge_request):(?P<iid>\d+)")


@dataclass(frozen=True)
class GitlabLinks:
    """Issues and merge requests on GitLab (`web_url`), by their project's path
    where the job that started the conversation still tells it."""

    web_url: str
    platform: ClassVar[str] = PLATFORM
    title: ClassVar[str] = "GitLab"

    async def thread_links(self, store: Store, threads: Sequence[Thread]) -> list[ThreadLink]:
        paths = await project_paths(store, (thread.conversation_id for thread in threads))
        return [
            thread_link(thread.key, self.web_url, paths.get(thread.conversation_id))
            for thread in threads
        ]


def thread_link(thread_key: str, gitlab_url: str, project_path: str | None) -> ThreadLink:
    """`{project_id}:{issue|merge_request}:{iid}` -> label and web URL. Without the
    project's path (not stored with the link) GitLab can only send `/projects/{id}` to
    the project's page."""
    match = _GITLAB_KEY.fullmatch(thread_key)
    if match is None:
        return ThreadLink(thread_key, None)
    project, kind, iid = match.group("project", "kind", "iid")
    noteable = Noteable(kind)
    sign = "#" if noteable is Noteable.ISSUE else "!"
    base = gitlab_url.rstrip("/")
    if project_path:
        url = f"{base}/{quote(project_path, safe='/')}/-/{noteable.path}/{iid}"
        return ThreadLink(f"{project_path}{sign}{iid}", url)
    return ThreadLink(
        f"project {project}, {noteable.noun} {sign}{iid}", f"{base}/projects/{project}"
    )


async def project_paths(store: Store, conversation_ids: Iterable[str]) -> dict[str, str]:
    """Project paths by conversation, from the tags of the job that started each
    conversation (bots.gitlab.job tags it with the project's path); gone once
    retention has pruned that job."""
    conversations = sorted(set(conversation_ids))
    if not conversations:
        return {}
    names = {f"c{index}": value for index, value in enumerate(conversations)}
    found = await store.fetch_all(
        "SELECT job_key, payload FROM jobs WHERE kind = :kind AND job_key IN ("
        + ", ".join(f":{name}" for name in names)
        + ")",
        {"kind": START_JOB.name, **names},
    )
    paths: dict[str, str] = {}
    for row in found:
        try:
            project = json.loads(row["payload"]).get("tags", {}).get("project")
        except (ValueError, AttributeError):
            continue
        if isinstance(project, str) and project:
            paths[str(row["job_key"])] = project
    return paths
