"""Which GitLab webhook deliveries ask the agent for something.

Pure functions of the event name (X-Gitlab-Event) and the payload, so that the
inbound route can drop everything else before it is stored, and the event job can
decide again from the stored payload once it knows the bot's own user.

Triggers: a new note on an issue or a merge request (confidential ones arrive as
"Confidential Note Hook") that mentions the bot, and TRIGGER_LABEL newly added to an
issue or a merge request (a confidential issue's updates: "Confidential Issue Hook").
Never: edits of notes (`action: update`), system notes, notes on commits and
snippets, the bot's own notes, other bot users, or a mention that is only quoted or
shown as code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bots.triggers import mentions_bot, request_text

NOTE_EVENTS = frozenset({"Note Hook", "Confidential Note Hook"})
# A confidential issue's updates arrive under an event name of their own.
LABEL_EVENTS = frozenset({"Issue Hook", "Confidential Issue Hook", "Merge Request Hook"})
TRIGGER_EVENTS = NOTE_EVENTS | LABEL_EVENTS

# GitLab's users behind project and group access tokens are named like this; they
# are bots whatever their role, and the bot never answers bots.
_TOKEN_BOT_USERNAME = re.compile(r"^(?:project|group)_\d+_bot(?:_[0-9a-f]+)?$")


class Noteable(StrEnum):
    """What a note belongs to, spelled as in thread keys."""

    ISSUE = "issue"
    MERGE_REQUEST = "merge_request"

    @property
    def path(self) -> str:
        """The REST path segment: /projects/{id}/{path}/{iid}."""
        return "issues" if self is Noteable.ISSUE else "merge_requests"

    @property
    def noun(self) -> str:
        """As written in text: "issue", "merge request"."""
        return "issue" if self is Noteable.ISSUE else "merge request"


# noteable_type of a Note Hook, object_kind of an Issue / Merge Request Hook.
_NOTEABLE_TYPES = {"Issue": Noteable.ISSUE, "MergeRequest": Noteable.MERGE_REQUEST}
_OBJECT_KINDS = {"issue": Noteable.ISSUE, "merge_request": Noteable.MERGE_REQUEST}


@dataclass(frozen=True)
class GitlabTrigger:
    project_id: int
    project_path: str  # path_with_namespace, e.g. "group/sub/project"
    noteable: Noteable
    iid: int
    user_id: int
    username: str
    # What was asked, the mention removed; empty for a label (the issue is the task).
    text: str
    # The triggering note and its discussion; None for a label trigger.
    note_id: int | None = None
    discussion_id: str | None = None

    @property
    def thread_key(self) -> str:
        return thread_key(self.project_id, self.noteable, self.iid)

    @property
    def is_label(self) -> bool:
        return self.note_id is None


def thread_key(project_id: int, noteable: Noteable, iid: int) -> str:
    """The thread of an issue or merge request: `{project_id}:{issue|merge_request}:{iid}`."""
    return f"{project_id}:{noteable.value}:{iid}"


def trigger_of(
    event: str,
    payload: dict[str, Any],
    *,
    mention: str,
    label: str,
    bot_user_id: int | None = None,
) -> GitlabTrigger | None:
    """The trigger a delivery carries, or None when it asks nothing of the agent.

    `bot_user_id` (from `GET /user`) is unknown to the inbound route until the job
    has asked once; the job decides again with it.
    """
    if event in NOTE_EVENTS:
        return _note_trigger(payload, mention, bot_user_id)
    if event in LABEL_EVENTS:
        return _label_trigger(payload, label, bot_user_id)
    return None


def _note_trigger(
    payload: dict[str, Any], mention: str, bot_user_id: int | None
) -> GitlabTrigger | None:
    note = _mapping(payload.get("object_attributes"))
    # GitLab before 16.11 sent no action, and only for new notes.
    if note.get("action", "create") != "create" or note.get("system"):
        return None
    noteable = _NOTEABLE_TYPES.get(str(note.get("noteable_type")))
    if noteable is None:
        return None  # a note on a commit or a snippet
    body = note.get("note")
    if not isinstance(body, str) or not mentions_bot(body, mention):
        return None
    user = _mapping(payload.get("user"))
    user_id = _int(user.get("id")) or _int(note.get("author_id"))
    target = _mapping(payload.get(noteable.value))
    iid, note_id = _int(target.get("iid")), _int(note.get("id"))
    project = _project(payload)
    if user_id is None or iid is None or note_id is None or project is None:
        return None
    if _is_bot(user_id, user, bot_user_id):
        return None
    discussion_id = note.get("discussion_id")
    return GitlabTrigger(
        project_id=project[0],
        project_path=project[1],
        noteable=noteable,
        iid=iid,
        user_id=user_id,
        username=str(user.get("username") or user_id),
        text=request_text(body, mention),
        note_id=note_id,
        discussion_id=discussion_id if isinstance(discussion_id, str) and discussion_id else None,
    )


def _label_trigger(
    payload: dict[str, Any], label: str, bot_user_id: int | None
) -> GitlabTrigger | None:
    noteable = _OBJECT_KINDS.get(str(payload.get("object_kind")))
    if noteable is None or not label_added(payload, label):
        return None
    user = _mapping(payload.get("user"))
    user_id = _int(user.get("id"))
    iid = _int(_mapping(payload.get("object_attributes")).get("iid"))
    project = _project(payload)
    if user_id is None or iid is None or project is None:
        return None
    if _is_bot(user_id, user, bot_user_id):
        return None
    return GitlabTrigger(
        project_id=project[0],
        project_path=project[1],
        noteable=noteable,
        iid=iid,
        user_id=user_id,
        username=str(user.get("username") or user_id),
        text="",
    )


def label_added(payload: dict[str, Any], label: str) -> bool:
    """True when `label` is among `changes.labels.current` but not `.previous`.

    The payload's top-level `labels` says which labels the issue has now, not which
    ones this change added: an issue that already had the label and is edited
    otherwise must not trigger again. GitLab label titles are compared as people
    see them, ignoring case.
    """
    labels = _mapping(_mapping(payload.get("changes")).get("labels"))
    wanted = label.casefold()
    return wanted in _titles(labels.get("current")) and wanted not in _titles(
        labels.get("previous")
    )


def _titles(labels: Any) -> set[str]:
    if not isinstance(labels, list):
        return set()
    return {
        str(item.get("title")).casefold()
        for item in labels
        if isinstance(item, dict) and item.get("title")
    }


def _is_bot(user_id: int, user: dict[str, Any], bot_user_id: int | None) -> bool:
    if bot_user_id is not None and user_id == bot_user_id:
        return True
    return bool(_TOKEN_BOT_USERNAME.match(str(user.get("username") or "")))


def _project(payload: dict[str, Any]) -> tuple[int, str] | None:
    project = _mapping(payload.get("project"))
    project_id = _int(project.get("id")) or _int(payload.get("project_id"))
    path = project.get("path_with_namespace")
    if project_id is None or not isinstance(path, str) or not path:
        return None
    return project_id, path


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    # bool is an int in Python, and never an id.
    return value if isinstance(value, int) and not isinstance(value, bool) else None
