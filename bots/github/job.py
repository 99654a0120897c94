"""The `github.event` job: installation news, and mentions turned into agent turns.

gidgethub's Router sends each stored delivery to its handler. Installation events
keep the installations table current. A trigger is checked (the installation is
active, the sender may write to the repository), acknowledged (an `eyes` reaction
and an "on it" comment with the conversation link), given its context (the issue or
PR, its newest comments, a review comment's file, line and diff hunk) and handed
to bots.mentions as a turn. Every step may run again after a crash: reactions are
idempotent on GitHub, comments carry an invisible marker by which a retry finds
them, and the turn is recorded once per delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gidgethub.routing import Router
from gidgethub.sansio import Event
from pydantic import BaseModel

from bots.github.api import GithubApi, GithubThread
from bots.github.inbound import GITHUB_EVENT_JOB
from bots.github.triggers import PLATFORM, GithubTrigger, TriggerKind, is_bot, trigger_of
from bots.mentions import (
    Turn,
    acknowledgement,
    find_link,
    marker,
    new_conversation_id,
    permission_refusal,
    record_turn,
)
from db.installations import (
    STATUS_ACTIVE,
    get_installation,
    save_installation,
    set_installation_status,
)
from db.jobs import Job, JobQueue, PermanentJobError, json_object
from db.logcontext import bind
from db.metrics import MENTIONS
from db.secrets import SecretBox
from db.store import Store

log = logging.getLogger(__name__)

HISTORY_COMMENTS = 20
WORKING_REACTION = "eyes"
# Permissions (or, for custom roles, role names) that may change the repository.
WRITERS = frozenset({"admin", "maintain", "write"})
NEEDED_ACCESS = "write access or above"
STATUS_SUSPENDED = "suspended"
STATUS_DELETED = "deleted"
# A comment shown to the agent is cut here: context, not the whole discussion.
MAX_CONTEXT_COMMENT_CHARS = 4000

router = Router()


@dataclass(frozen=True)
class GithubMentions:
    store: Store
    queue: JobQueue
    box: SecretBox
    clients: GithubApi
    # Builds bots.github.reply.GithubCallbackProcessor; handed in by relay, since
    # bots/ does not import processors/.
    new_processor: Callable[..., BaseModel]
    conversation_url: Callable[[str], str | None]
    mention: str
    trigger_label: str
    edit_ack_comment: bool = False

    async def handle(self, job: Job) -> None:
        payload = GITHUB_EVENT_JOB.payload_of(job)
        event = Event(
            json_object(payload.payload), event=payload.event, delivery_id=payload.delivery_id
        )
        # The worker runs each job in a task of its own: what is bound here stays in it.
        bind(delivery=event.delivery_id)
        # Its handlers get the delivery's arrival time: the job was queued then.
        await router.dispatch(event, self, job.created_at)

    # -- installations ------------------------------------------------------------------

    async def save_installation(self, data: dict[str, Any], status: str) -> None:
        installation = data.get("installation") or {}
        account = installation.get("account") or {}
        previous = await get_installation(
            self.store, self.box, PLATFORM, str(installation.get("id"))
        )
        repositories = set((previous.details.get("repositories") if previous else None) or [])
        repositories |= {r["full_name"] for r in data.get("repositories") or []}
        repositories |= {r["full_name"] for r in data.get("repositories_added") or []}
        repositories -= {r["full_name"] for r in data.get("repositories_removed") or []}
        await save_installation(
            self.store,
            self.box,
            platform=PLATFORM,
            account_id=str(installation["id"]),
            details={
                "account": account.get("login"),
                "account_type": account.get("type"),
                "app_id": installation.get("app_id"),
                "repository_selection": installation.get("repository_selection"),
                "repositories": sorted(repositories),
            },
            credentials=None,
            status=status,
        )

    async def is_active(self, installation_id: int) -> bool:
        """Installations this process has not heard of count as active: the app may have
        been installed before this relay was, and GitHub still signs their events."""
        row = await get_installation(self.store, self.box, PLATFORM, str(installation_id))
        return row is None or row.status == STATUS_ACTIVE

    # -- triggers -------------------------------------------------------------------------

    async def on_trigger(self, event: Event, received_at: float | None = None) -> None:
        slug = await self.clients.app_slug()
        trigger = trigger_of(
            event.event,
            event.data,
            mention=self.mention,
            trigger_label=self.trigger_label,
            app_slug=slug,
        )
        if trigger is None:
            MENTIONS.labels(platform=PLATFORM, outcome="not_a_trigger").inc()
            return
        if trigger.installation_id is None:
            MENTIONS.labels(platform=PLATFORM, outcome="no_installation").inc()
            log.warning("github delivery %s has no installation; ignored", event.delivery_id)
            return
        if not await self.is_active(trigger.installation_id):
            MENTIONS.labels(platform=PLATFORM, outcome="inactive_installation").inc()
            log.info(
                "github delivery %s: installation %s is not active; ignored",
                event.delivery_id,
                trigger.installation_id,
            )
            return
        thread = GithubThread(
            trigger.installation_id, trigger.repository, trigger.number, trigger.review_thread_id
        )
        if not await self._may_write(trigger):
            await self._refuse(thread, trigger, event.delivery_id)
            MENTIONS.labels(platform=PLATFORM, outcome="no_permission").inc()
            return
        link = await find_link(self.store, PLATFORM, trigger.thread_key)
        await self._react(trigger)
        item, pull = await self._item(trigger)
        comments = await thread.comments(self.clients)
        conversation_id = (
            link.conversation_id if link else new_conversation_id(PLATFORM, event.delivery_id)
        )
        bind(conversation=conversation_id)
        ack = await self._acknowledge(
            thread, comments, conversation_id, event.delivery_id, continuing=link is not None
        )
        people = [
            c
            for c in comments
            if not is_bot(c.get("user"), slug) and c.get("id") != trigger.source_id
        ]
        if link is not None and link.cursor:
            people = [c for c in people if int(c.get("id") or 0) > int(link.cursor)]
        history = [_comment_line(c) for c in people[-HISTORY_COMMENTS:]]
        if link is None:
            text = _new_conversation_prompt(trigger, item, pull, event.data, history)
        else:
            text = _follow_up_message(trigger, history)
        seen = [int(c.get("id") or 0) for c in comments] + [trigger.source_id or 0]
        turn = Turn(
            platform=PLATFORM,
            thread_key=trigger.thread_key,
            delivery_id=event.delivery_id,
            conversation_id=conversation_id,
            text=text,
            processor=self.new_processor(
                installation_id=trigger.installation_id,
                repository=trigger.repository,
                number=trigger.number,
                review_thread_id=trigger.review_thread_id,
                asker=trigger.sender,
                ack_comment_id=int(ack["id"]) if self.edit_ack_comment else None,
            ),
            tags=_tags(trigger),
            cursor=str(max(seen)),
            received_at=received_at,
        )
        await record_turn(self.store, self.queue, turn, continuing=link is not None)

    async def _may_write(self, trigger: GithubTrigger) -> bool:
        assert trigger.installation_id is not None
        try:
            answer = await self.clients.call(
                trigger.installation_id,
                "GET",
                f"/repos/{trigger.repository}/collaborators/{trigger.sender}/permission",
            )
        except PermanentJobError as exc:
            # 404: not a collaborator GitHub will tell us about.
            log.info(
                "github %s: no permission for %s (%s)", trigger.repository, trigger.sender, exc
            )
            return False
        permission = str(answer.get("permission") or "")
        role = str(answer.get("role_name") or "")
        return permission in WRITERS or role in WRITERS

    async def _refuse(self, thread: GithubThread, trigger: GithubTrigger, delivery_id: str) -> None:
        tag = marker("refusal", delivery_id)
        if await thread.find_marked(self.clients, tag) is None:
            await thread.post(
                self.clients, f"@{trigger.sender} {permission_refusal(NEEDED_ACCESS)}\n\n{tag}"
            )
        log.info(
            "github %s: %s may not trigger the agent (delivery %s)",
            trigger.thread_key,
            trigger.sender,
            delivery_id,
        )

    async def _react(self, trigger: GithubTrigger) -> None:
        assert trigger.installation_id is not None
        if trigger.kind is TriggerKind.COMMENT:
            url = f"/repos/{trigger.repository}/issues/comments/{trigger.source_id}/reactions"
        elif trigger.kind is TriggerKind.REVIEW_COMMENT:
            url = f"/repos/{trigger.repository}/pulls/comments/{trigger.source_id}/reactions"
        else:
            # Reviews take no reactions; the PR does (and the issue, for a label).
            url = f"/repos/{trigger.repository}/issues/{trigger.number}/reactions"
        try:
            await self.clients.call(
                trigger.installation_id, "POST", url, data={"content": WORKING_REACTION}
            )
        except PermanentJobError as exc:
            # A courtesy: a comment deleted meanwhile must not stop the work.
            log.warning("github %s: no reaction: %s", trigger.thread_key, exc)

    async def _item(self, trigger: GithubTrigger) -> tuple[dict[str, Any], dict[str, Any] | None]:
        assert trigger.installation_id is not None
        base = f"/repos/{trigger.repository}"
        item = await self.clients.call(
            trigger.installation_id, "GET", f"{base}/issues/{trigger.number}"
        )
        pull = None
        if trigger.is_pull_request:
            pull = await self.clients.call(
                trigger.installation_id, "GET", f"{base}/pulls/{trigger.number}"
            )
        return item, pull

    async def _acknowledge(
        self,
        thread: GithubThread,
        comments: list[dict[str, Any]],
        conversation_id: str,
        delivery_id: str,
        *,
        continuing: bool,
    ) -> dict[str, Any]:
        """The "on it" comment: the one an earlier attempt posted, or a new one."""
        tag = marker("ack", delivery_id)
        for comment in comments:
            if tag in str(comment.get("body") or ""):
                return comment
        where = "this review thread" if thread.review_thread_id is not None else "a comment here"
        text = acknowledgement(
            self.conversation_url(conversation_id), continuing=continuing, where=where
        )
        return await thread.post(self.clients, f"{text}\n\n{tag}")


@router.register("installation")
async def installation_changed(event: Event, mentions: GithubMentions, *_: object) -> None:
    status = {
        "created": STATUS_ACTIVE,
        "new_permissions_accepted": STATUS_ACTIVE,
        "unsuspend": STATUS_ACTIVE,
        "suspend": STATUS_SUSPENDED,
        "deleted": STATUS_DELETED,
    }.get(str(event.data.get("action")))
    if status is None:
        return
    installation_id = str((event.data.get("installation") or {}).get("id"))
    if status == STATUS_ACTIVE or not await set_installation_status(
        mentions.store, PLATFORM, installation_id, status
    ):
        # Deleted and suspended installations stay listed (with their status), so
        # their late deliveries are recognised and ignored.
        await mentions.save_installation(event.data, status)
    if status == STATUS_DELETED:
        mentions.clients.forget_token(int(installation_id))
    log.info("github installation %s: %s", installation_id, status)


@router.register("installation_repositories")
async def repositories_changed(event: Event, mentions: GithubMentions, *_: object) -> None:
    installation_id = str((event.data.get("installation") or {}).get("id"))
    row = await get_installation(mentions.store, mentions.box, PLATFORM, installation_id)
    await mentions.save_installation(event.data, row.status if row else STATUS_ACTIVE)


@router.register("issue_comment", action="created")
@router.register("pull_request_review_comment", action="created")
@router.register("pull_request_review", action="submitted")
@router.register("issues", action="labeled")
@router.register("pull_request", action="labeled")
async def triggered(event: Event, mentions: GithubMentions, received_at: float) -> None:
    await mentions.on_trigger(event, received_at)


def _comment_line(comment: dict[str, Any]) -> str:
    login = (comment.get("user") or {}).get("login") or "someone"
    body = str(comment.get("body") or "").strip()
    if len(body) > MAX_CONTEXT_COMMENT_CHARS:
        body = body[:MAX_CONTEXT_COMMENT_CHARS] + " […]"
    return f"@{login}: {body}"


def _new_conversation_prompt(
    trigger: GithubTrigger,
    item: dict[str, Any],
    pull: dict[str, Any] | None,
    data: dict[str, Any],
    history: list[str],
) -> str:
    kind = "pull request" if trigger.is_pull_request else "issue"
    where = f'{kind} {trigger.repository}#{trigger.number} "{item.get("title") or ""}"'
    if trigger.kind is TriggerKind.LABEL:
        parts = [
            f'@{trigger.sender} added the label "{(data.get("label") or {}).get("name")}" to'
            f" GitHub {where}. That {kind} is your task."
        ]
    else:
        parts = [f"@{trigger.sender} asked you on GitHub, in {where}:", trigger.text]
    parts.append(f"Repository: {trigger.repository}")
    if pull is not None:
        parts.append(
            f"Pull request: {pull.get('html_url')}, branch"
            f" {(pull.get('head') or {}).get('ref')} into {(pull.get('base') or {}).get('ref')}"
        )
    else:
        parts.append(f"Issue: {item.get('html_url')}")
    if trigger.kind is TriggerKind.REVIEW_COMMENT:
        comment = data.get("comment") or {}
        parts.append(
            f"The review comment is on {comment.get('path')}, line"
            f" {comment.get('line') or comment.get('original_line')}:\n"
            f"```diff\n{comment.get('diff_hunk') or ''}\n```"
        )
    description = str(item.get("body") or "").strip()
    if description:
        parts.append(f"The {kind}'s description:\n{description}")
    if history:
        parts.append("Comments so far, oldest first:\n" + "\n".join(history))
    parts.append(f"Your answer will be posted as a comment on that {kind}.")
    return "\n\n".join(parts)


def _follow_up_message(trigger: GithubTrigger, history: list[str]) -> str:
    if trigger.kind is TriggerKind.LABEL:
        parts = [f"@{trigger.sender} added the trigger label again: please look at it once more."]
    else:
        parts = [f"@{trigger.sender} followed up on GitHub:", trigger.text]
    if history:
        parts.append("Comments since your last answer:\n" + "\n".join(history))
    return "\n\n".join(parts)


def _tags(trigger: GithubTrigger) -> dict[str, str]:
    # Agent-server tags: lowercase alphanumeric keys, values of at most 256 characters.
    return {
        "platform": PLATFORM,
        "repository": trigger.repository[:256],
        "number": str(trigger.number),
    }
