"""Which GitHub webhook deliveries ask the agent for something.

Pure functions of the event name and payload, so that the inbound route can drop
everything else before it is stored, and the event job can decide again from the
stored payload. Triggers: a new comment on an issue or PR, a new review comment (its
review thread is the thread), a submitted review whose body mentions the bot, and
TRIGGER_LABEL added to an issue or PR. Never: bots (the app itself included), edits,
deletions, or a mention that is only quoted or shown as code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bots.triggers import mentions_bot, request_text


class TriggerKind(StrEnum):
    COMMENT = "comment"  # issue_comment on an issue or a PR
    REVIEW_COMMENT = "review_comment"  # pull_request_review_comment (inline, in a thread)
    REVIEW = "review"  # pull_request_review with a body
    LABEL = "label"  # issues / pull_request labeled with TRIGGER_LABEL


@dataclass(frozen=True)
class GithubTrigger:
    kind: TriggerKind
    repository: str  # "owner/name"
    number: int
    is_pull_request: bool
    installation_id: int | None
    sender: str
    # What was asked, the mention removed; empty for a label (the issue is the task).
    text: str
    # The comment, review comment or review that triggered; None for a label.
    source_id: int | None = None
    # A review comment's thread: the id of its top comment (replies go under it).
    review_thread_id: int | None = None

    @property
    def thread_key(self) -> str:
        key = f"{self.repository}#{self.number}"
        return f"{key}/r{self.review_thread_id}" if self.review_thread_id is not None else key


def is_bot(sender: dict[str, Any] | None, app_slug: str | None) -> bool:
    """GitHub Apps and other bots comment as users of type "Bot" named `{slug}[bot]`."""
    sender = sender or {}
    login = str(sender.get("login") or "")
    if sender.get("type") == "Bot" or login.endswith("[bot]"):
        return True
    return app_slug is not None and login.lower() == f"{app_slug}[bot]".lower()


def trigger_of(
    event: str,
    payload: dict[str, Any],
    *,
    mention: str,
    trigger_label: str,
    app_slug: str | None = None,
) -> GithubTrigger | None:
    """The trigger this delivery is, or None when it asks nothing of the agent."""
    if is_bot(payload.get("sender"), app_slug):
        return None
    action = payload.get("action")
    if event == "issue_comment" and action == "created":
        return _mention(TriggerKind.COMMENT, payload, payload.get("issue"), "comment", mention)
    if event == "pull_request_review_comment" and action == "created":
        return _mention(
            TriggerKind.REVIEW_COMMENT, payload, payload.get("pull_request"), "comment", mention
        )
    if event == "pull_request_review" and action == "submitted":
        return _mention(TriggerKind.REVIEW, payload, payload.get("pull_request"), "review", mention)
    if event in ("issues", "pull_request") and action == "labeled":
        label = str((payload.get("label") or {}).get("name") or "")
        if label.casefold() != trigger_label.casefold():
            return None
        item = payload.get("issue" if event == "issues" else "pull_request") or {}
        return _trigger(TriggerKind.LABEL, payload, item, text="", pull=event == "pull_request")
    return None


def _mention(
    kind: TriggerKind,
    payload: dict[str, Any],
    item: dict[str, Any] | None,
    source_field: str,
    mention: str,
) -> GithubTrigger | None:
    source = payload.get(source_field) or {}
    body = str(source.get("body") or "")
    if item is None or not mentions_bot(body, mention):
        return None
    pull = kind is not TriggerKind.COMMENT or bool(item.get("pull_request"))
    thread = None
    if kind is TriggerKind.REVIEW_COMMENT:
        thread = int(source.get("in_reply_to_id") or source["id"])
    return _trigger(
        kind,
        payload,
        item,
        text=request_text(body, mention),
        pull=pull,
        source_id=int(source["id"]),
        review_thread_id=thread,
    )


def _trigger(
    kind: TriggerKind,
    payload: dict[str, Any],
    item: dict[str, Any],
    *,
    text: str,
    pull: bool,
    source_id: int | None = None,
    review_thread_id: int | None = None,
) -> GithubTrigger | None:
    repository = (payload.get("repository") or {}).get("full_name")
    number = item.get("number")
    if not isinstance(repository, str) or not isinstance(number, int):
        return None
    installation = (payload.get("installation") or {}).get("id")
    return GithubTrigger(
        kind=kind,
        repository=repository,
        number=number,
        is_pull_request=pull,
        installation_id=int(installation) if installation is not None else None,
        sender=str((payload.get("sender") or {}).get("login") or ""),
        text=text,
        source_id=source_id,
        review_thread_id=review_thread_id,
    )
