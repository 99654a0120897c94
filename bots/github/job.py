"""The `github.event` job: installation news, and mentions turned into agent turns.

gidgethub's Router sends each stored delivery to its handler. Installation events
keep the installations table current. A trigger is checked (the installation is
active, the sender may write to the repository), acknowledged (an `eyes` reaction
and an "on it" comment with the conversation link), given its context (the issue or
PR, its newest comments, a review comment's file, line and diff hunk) and handed
to the shared turn sequence (bots.turns). Every step may run again after a crash: reactions are
idempotent on GitHub, comments carry an invisible marker by which a retry finds
them, and the turn is recorded once per delivery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gidgethub.routing import Router
from gidgethub.sansio import Event

from agent.checkout import Requester, WorkspaceRequest
from bots.github import PLATFORM
from bots.github.api import GithubApi, GithubThread
from bots.github.inbound import GITHUB_EVENT_JOB
from bots.github.reply import GithubCallbackProcessor
from bots.github.triggers import GithubTrigger, TriggerKind, is_bot, trigger_of
from bots.hygiene import visible_text
from bots.markers import marker, post_once
from bots.texts import WORKING_REACTION, markdown_link, request_title, shorten
from bots.turns import Context, Turns, count_refusal, refuse
from db.installations import (
    STATUS_ACTIVE,
    get_installation,
    save_installation,
    set_installation_status,
)
from db.job_kinds import Job, PermanentJobError, json_object
from db.logcontext import bind
from db.secrets import SecretBox
from db.store import Store

log = logging.getLogger(__name__)

HISTORY_COMMENTS = 20
# Permissions (or, for custom roles, role names) that may change the repository.
WRITERS = frozenset({"admin", "maintain", "write"})
NEEDED_ACCESS = "write access or above"
STATUS_SUSPENDED = "suspended"
STATUS_DELETED = "deleted"
# GitHub's author_association of the people who may change the repository.
INSIDERS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
# A comment shown to the agent is cut here: context, not the whole discussion.
MAX_CONTEXT_COMMENT_CHARS = 4000

router = Router()


@dataclass(frozen=True)
class GithubEventJob:
    turns: Turns
    box: SecretBox
    api: GithubApi
    mention: str
    trigger_label: str
    edit_ack_comment: bool = False

    @property
    def store(self) -> Store:
        return self.turns.store

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
        slug = await self.api.app_slug()
        trigger = trigger_of(
            event.event,
            event.data,
            mention=self.mention,
            trigger_label=self.trigger_label,
            app_slug=slug,
        )
        if trigger is None:
            count_refusal(PLATFORM, "not_a_trigger")
            return
        if trigger.installation_id is None:
            count_refusal(PLATFORM, "no_installation")
            log.warning("github delivery %s has no installation; ignored", event.delivery_id)
            return
        if not await self.is_active(trigger.installation_id):
            count_refusal(PLATFORM, "inactive_installation")
            log.info(
                "github delivery %s: installation %s is not active; ignored",
                event.delivery_id,
                trigger.installation_id,
            )
            return
        thread = GithubThread(
            self.api,
            trigger.installation_id,
            trigger.repository,
            trigger.number,
            trigger.review_thread_id,
        )
        if not await self._may_write(trigger):
            await refuse(
                thread,
                PLATFORM,
                trigger.thread_key,
                trigger.sender,
                NEEDED_ACCESS,
                key=event.delivery_id,
            )
            return
        who = f"@{trigger.sender}"
        if await self.turns.command(
            thread, PLATFORM, trigger.thread_key, event.delivery_id, who, trigger.text
        ):
            return
        mention = GithubMention(
            thread,
            trigger,
            event,
            app_slug=slug,
            edit_ack_comment=self.edit_ack_comment,
            bot_mention=self.mention,
        )
        await self.turns.take(mention, received_at=received_at)

    async def _may_write(self, trigger: GithubTrigger) -> bool:
        assert trigger.installation_id is not None
        try:
            answer = await self.api.call(
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


class GithubMention:
    """A GitHub mention as the shared turn sequence (bots.turns) speaks to it."""

    platform = PLATFORM
    link_style = staticmethod(markdown_link)

    def __init__(
        self,
        thread: GithubThread,
        trigger: GithubTrigger,
        event: Event,
        *,
        app_slug: str | None,
        edit_ack_comment: bool,
        bot_mention: str = "@openhands",
    ) -> None:
        assert trigger.installation_id is not None
        self.thread = thread
        self.trigger = trigger
        self.installation_id = trigger.installation_id
        self.thread_key = trigger.thread_key
        self.delivery_id = event.delivery_id
        self.data = event.data
        self.app_slug = app_slug
        self.edit_ack_comment = edit_ack_comment
        self.bot_mention = bot_mention
        self.answer_place = (
            "this review thread" if trigger.review_thread_id is not None else "a comment here"
        )
        self.ack_comment_id: int | None = None
        self.item: dict[str, Any] = {}
        self.pull: dict[str, Any] | None = None

    async def react(self) -> None:
        trigger = self.trigger
        if trigger.kind is TriggerKind.COMMENT:
            url = f"/repos/{trigger.repository}/issues/comments/{trigger.source_id}/reactions"
        elif trigger.kind is TriggerKind.REVIEW_COMMENT:
            url = f"/repos/{trigger.repository}/pulls/comments/{trigger.source_id}/reactions"
        else:
            # Reviews take no reactions; the PR does (and the issue, for a label).
            url = f"/repos/{trigger.repository}/issues/{trigger.number}/reactions"
        try:
            await self.thread.api.call(
                self.installation_id, "POST", url, data={"content": WORKING_REACTION}
            )
        except PermanentJobError as exc:
            # A courtesy: a comment deleted meanwhile must not stop the work.
            log.warning("github %s: no reaction: %s", trigger.thread_key, exc)

    async def acknowledge(self, text: str) -> None:
        self.ack_comment_id = await post_once(self.thread, text, marker("ack", self.delivery_id))

    async def context(self, since: str | None) -> Context:
        base = f"/repos/{self.trigger.repository}"
        api, number = self.thread.api, self.trigger.number
        self.item = await api.call(self.installation_id, "GET", f"{base}/issues/{number}")
        if self.trigger.is_pull_request:
            self.pull = await api.call(self.installation_id, "GET", f"{base}/pulls/{number}")
        # Read before the acknowledgement was posted (it searched them): the bot's own
        # comments are left out anyway.
        comments = await self.thread.comments()
        people = [
            c
            for c in comments
            if not is_bot(c.get("user"), self.app_slug) and c.get("id") != self.trigger.source_id
        ]
        if since:
            people = [c for c in people if int(c.get("id") or 0) > int(since)]
        seen = [int(c.get("id") or 0) for c in comments]
        if self.trigger.kind is not TriggerKind.REVIEW:
            # A review's id counts in a sequence of its own, not the comments'.
            seen.append(self.trigger.source_id or 0)
        return Context(
            history=[_comment_line(c) for c in people[-HISTORY_COMMENTS:]],
            cursor=str(max(seen, default=0)),
        )

    def prompt(self, context: Context) -> str:
        return _new_conversation_prompt(
            self.trigger, self.item, self.pull, self.data, context.history
        )

    def follow_up(self, context: Context) -> str:
        return _follow_up_message(self.trigger, context.history)

    def processor(self) -> GithubCallbackProcessor:
        return GithubCallbackProcessor.of(
            self.trigger,
            installation_id=self.installation_id,
            asker=self.trigger.sender,
            ack_comment_id=self.ack_comment_id if self.edit_ack_comment else None,
            status_comment_id=self.ack_comment_id,
            status_marker=marker("ack", self.delivery_id),
            bot_mention=self.bot_mention,
        )

    def workspace(self) -> WorkspaceRequest:
        trigger, sender = self.trigger, self.data.get("sender") or {}
        return WorkspaceRequest(
            repository=trigger.repository,
            host=PLATFORM,
            locator=str(self.installation_id),
            issue_number=None if trigger.is_pull_request else trigger.number,
            change_request_number=trigger.number if trigger.is_pull_request else None,
            # The issue's title names the change better than "please fix this".
            title=request_title(str(self.item.get("title") or ""), trigger.text),
            requester=Requester(
                login=trigger.sender,
                platform=PLATFORM,
                name=trigger.sender,
                # GitHub's noreply address links the commit to the account.
                email=(
                    f"{sender['id']}+{trigger.sender}@users.noreply.github.com"
                    if sender.get("id")
                    else None
                ),
            ),
            thread_url=self.item.get("html_url"),
        )

    def tags(self) -> dict[str, str]:
        return {
            "platform": PLATFORM,
            "repository": self.trigger.repository,
            "number": str(self.trigger.number),
        }


@router.register("installation")
async def installation_changed(event: Event, job: GithubEventJob, *_: object) -> None:
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
        job.store, PLATFORM, installation_id, status
    ):
        # Deleted and suspended installations stay listed (with their status), so
        # their late deliveries are recognised and ignored.
        await job.save_installation(event.data, status)
    if status == STATUS_DELETED:
        job.api.forget_token(int(installation_id))
    log.info("github installation %s: %s", installation_id, status)


@router.register("installation_repositories")
async def repositories_changed(event: Event, job: GithubEventJob, *_: object) -> None:
    installation_id = str((event.data.get("installation") or {}).get("id"))
    row = await get_installation(job.store, job.box, PLATFORM, installation_id)
    await job.save_installation(event.data, row.status if row else STATUS_ACTIVE)


@router.register("issue_comment", action="created")
@router.register("pull_request_review_comment", action="created")
@router.register("pull_request_review", action="submitted")
@router.register("issues", action="labeled")
@router.register("pull_request", action="labeled")
async def triggered(event: Event, job: GithubEventJob, received_at: float) -> None:
    await job.on_trigger(event, received_at)


def _comment_line(comment: dict[str, Any]) -> str:
    login = (comment.get("user") or {}).get("login") or "someone"
    # GitHub says how the author relates to the repository; anyone but its owner,
    # its organisation's members and its collaborators is an outside contributor.
    outside = comment.get("author_association") not in INSIDERS
    who = f"@{login} (outside contributor)" if outside else f"@{login}"
    body = visible_text(str(comment.get("body") or "")).strip()
    return f"{who}: {shorten(body, MAX_CONTEXT_COMMENT_CHARS)}"


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
        parts = [f"@{trigger.sender} asked you on GitHub, in {where}:", visible_text(trigger.text)]
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
    description = visible_text(str(item.get("body") or "")).strip()
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
        parts = [f"@{trigger.sender} followed up on GitHub:", visible_text(trigger.text)]
    if history:
        parts.append("Comments since your last answer:\n" + "\n".join(history))
    return "\n\n".join(parts)
