"""Which repository a Slack mention that starts a conversation is about.

In this order: one the message names (a URL, `owner/name`); the channel's default,
which anyone sets with `@openhands use owner/name` in the channel (and clears with
`@openhands use none`); DEFAULT_REPOSITORY; else the person who asked picks one in
the thread, from the repositories the GitHub App's installations and the GitLab bot
can reach (a menu; type-ahead through Bolt's options handler when there are more
than Slack's 100 options), or "no repository". The mention waits, stored with its
event job's payload, until that pick (bots/slack/picks.py queues it again).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.checkout import WorkspaceRequest
from bots.slack import PLATFORM
from bots.slack.api import SlackTeam
from bots.slack.blocks import NO_REPOSITORY_ACTION, PICK_ACTION, text_section
from bots.slack.triggers import SlackTrigger
from bots.texts import no_checkout_note
from bots.triggers import infer_repository
from db.repository_choices import (
    PendingChoice,
    channel_repository,
    hold_choice,
    place_picker,
    set_channel_repository,
)
from db.store import Store
from processors.hosts import RepositoryHost
from processors.workspace import HostedRepository, locate, reachable_repositories

log = logging.getLogger(__name__)

# Marks the picker message (Slack message metadata), so a retried job finds it.
PICKER_EVENT_TYPE = "agent_relay_picker"
# Marks the confirmation of `use`, for the same reason.
USE_EVENT_TYPE = "agent_relay_use"
# Slack's limits: options in a static_select (and in one options answer), and the
# characters of an option's text and value.
MAX_OPTIONS = 100
OPTION_TEXT_CHARS = 75
OPTION_VALUE_CHARS = 150
HOST_LABELS = {"github": "GitHub", "gitlab": "GitLab"}

_USE = re.compile(r"^use\s+(?P<what>.+?)\s*[.!]?$", re.IGNORECASE | re.DOTALL)
# "owner/name", or a GitLab project's full path "group/sub/name".
_REPOSITORY_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)+")
_NO_REPOSITORY = frozenset({"none", "nothing", "no repository", "no repo", "nothing at all"})


@dataclass(frozen=True)
class UseCommand:
    """`use owner/name` (repository set), `use none` (None); `invalid` when the words
    after `use` name no repository."""

    repository: str | None
    invalid: bool = False


def use_command(text: str) -> UseCommand | None:
    """The `use ...` command a mention's text is, or None when it asks something else."""
    match = _USE.match(text.strip())
    if match is None:
        return None
    what = match.group("what").strip().strip("`*_")
    if what.lower() in _NO_REPOSITORY:
        return UseCommand(None)
    if len(what.split()) > 1 and not what.startswith("<"):
        # "use the retry helper in parser.py": a request, not a command.
        return None
    named = what.strip("<>").split("|")[0]
    # A bare path is taken whole: a GitLab project in a subgroup ("group/sub/name")
    # has more parts than the owner/name a request's text is searched for.
    path = _REPOSITORY_PATH.fullmatch(named.removesuffix(".git"))
    if path and re.search(r"[A-Za-z]", path.group(0)):
        repository: str | None = path.group(0)
    else:
        repository = infer_repository(named)
    return UseCommand(repository) if repository else UseCommand(None, invalid=True)


@dataclass(frozen=True)
class RepositoryChoice:
    """The repository a conversation starts on, and the platform hosting it when the
    person picked one from a list (None: whichever can serve it)."""

    repository: str | None
    host: str | None = None


def option_value(repository: HostedRepository) -> str:
    return f"{repository.host}:{repository.name}"[:OPTION_VALUE_CHARS]


def parse_choice(value: str, hosts: Mapping[str, object]) -> RepositoryChoice | None:
    """A picked option's value ("github:acme/api"; "" for no repository); None when it
    is not one this relay offers."""
    if not value:
        return RepositoryChoice(None)
    host, _, name = value.partition(":")
    if host not in hosts or not _REPOSITORY_PATH.fullmatch(name):
        return None
    return RepositoryChoice(name, host)


def channel_key(team_id: str, channel: str) -> str:
    return f"{team_id}:{channel}"


def picker_ref(team_id: str, channel: str, ts: str) -> str:
    return f"{team_id}:{channel}:{ts}"


def use_confirmation(repository: str | None) -> str:
    if repository is None:
        return (
            "This channel has no repository now. Name one in a request, or set one with"
            " `use owner/name`."
        )
    return (
        f"This channel now works on {repository}. Requests that name no other repository"
        " are about it; `use none` clears it."
    )


INVALID_USE = "That names no repository. Say `use owner/name` (or a link to it), or `use none`."


def picker_text(asker: str) -> str:
    return f"<@{asker}> Which repository is this about? I'll start once you pick one."


def picked_text(choice: RepositoryChoice, who: str) -> str:
    if choice.repository is None:
        return f"<@{who}> picked no repository: working without a checkout."
    return f"<@{who}> picked {choice.repository}."


def refusal_text(asker: str) -> str:
    return f"Only <@{asker}>, who asked, can pick the repository for this request."


def _option(repository: HostedRepository, *, with_host: bool) -> dict[str, Any]:
    option: dict[str, Any] = {
        "text": {"type": "plain_text", "text": repository.name[:OPTION_TEXT_CHARS]},
        "value": option_value(repository),
    }
    if with_host:
        label = HOST_LABELS.get(repository.host, repository.host)
        option["description"] = {"type": "plain_text", "text": label}
    return option


def options_of(repositories: list[HostedRepository]) -> list[dict[str, Any]]:
    """Block Kit options; each says its platform when the list has more than one."""
    with_host = len({r.host for r in repositories}) > 1
    return [_option(r, with_host=with_host) for r in repositories]


def picker_blocks(asker: str, repositories: list[HostedRepository]) -> list[dict[str, Any]]:
    """The picker: a menu of the repositories (typed into when there are more than
    Slack lists at once) and a "No repository" button."""
    placeholder = {"type": "plain_text", "text": "Pick a repository"}
    menu: dict[str, Any]
    if len(repositories) <= MAX_OPTIONS:
        menu = {
            "type": "static_select",
            "action_id": PICK_ACTION,
            "placeholder": placeholder,
            "options": options_of(repositories),
        }
    else:
        menu = {
            "type": "external_select",
            "action_id": PICK_ACTION,
            "placeholder": {"type": "plain_text", "text": "Type to find a repository"},
            "min_query_length": 0,
        }
    button = {
        "type": "button",
        "action_id": NO_REPOSITORY_ACTION,
        "text": {"type": "plain_text", "text": "No repository"},
        "value": "none",
    }
    return [
        text_section(picker_text(asker)),
        {"type": "actions", "block_id": "relay.repository", "elements": [menu, button]},
    ]


async def reply_once(
    team: SlackTeam,
    trigger: SlackTrigger,
    text: str,
    event_type: str,
    *,
    blocks: list[dict[str, Any]] | None = None,
) -> str:
    """Post in the mention's thread unless an earlier attempt did; the message's ts."""
    return await team.post_once_in_thread(
        trigger.channel,
        trigger.thread_ts,
        text,
        event_type=event_type,
        key={"trigger_ts": trigger.ts},
        blocks=blocks,
    )


@dataclass(frozen=True)
class SlackRepositories:
    """Slack's repository choosing: what it reads and writes, and where the hosts are."""

    store: Store
    # The repository hosts, read when asked: they are filled in once every platform
    # is built, after Slack's parts are.
    hosts: Callable[[], Mapping[str, RepositoryHost]]
    default_repository: str | None = None

    async def use(self, team: SlackTeam, trigger: SlackTrigger, command: UseCommand) -> None:
        """`@openhands use ...`: the channel's default set or cleared, and said so."""
        if command.invalid:
            await reply_once(team, trigger, INVALID_USE, USE_EVENT_TYPE)
            return
        await set_channel_repository(
            self.store,
            PLATFORM,
            channel_key(trigger.team_id, trigger.channel),
            command.repository,
            set_by=trigger.user,
        )
        text = use_confirmation(command.repository)
        hosts = self.hosts()
        if command.repository and hosts:
            # Kept all the same: the App may be installed on it later.
            wanted = WorkspaceRequest(repository=command.repository)
            if await locate(hosts, wanted) is None:
                text = f"{text} {no_checkout_note(command.repository)}"
        await reply_once(team, trigger, text, USE_EVENT_TYPE)
        log.info(
            "slack %s: channel repository %s by %s",
            trigger.thread_key,
            command.repository or "cleared",
            trigger.user,
        )

    async def choose(
        self,
        team: SlackTeam,
        trigger: SlackTrigger,
        *,
        delivery_id: str,
        picked: str | None,
        job_kind: str,
        payload: str,
    ) -> RepositoryChoice | None:
        """The repository of a new conversation; None when the person who asked was
        shown the picker (the mention waits for the pick). `picked`: the value of a
        pick made for this mention before."""
        if picked is not None:
            choice = parse_choice(picked, self.hosts())
            return choice if choice is not None else RepositoryChoice(None)
        named = infer_repository(trigger.text)
        if named is not None:
            return RepositoryChoice(named)
        key = channel_key(trigger.team_id, trigger.channel)
        default = await channel_repository(self.store, PLATFORM, key) or self.default_repository
        if default is not None:
            return RepositoryChoice(default)
        hosts = self.hosts()
        listed = await reachable_repositories(hosts) if hosts else []
        if not listed:
            # Nothing to pick from (no host, or it reaches nothing): as before pickers.
            return RepositoryChoice(None)
        pending = await hold_choice(
            self.store,
            PendingChoice(
                platform=PLATFORM,
                delivery_id=delivery_id,
                thread_key=trigger.thread_key,
                asker=trigger.user,
                job_kind=job_kind,
                payload=payload,
            ),
        )
        if pending.chosen is not None:
            # Picked already (a job that ran before the pick, run again): the pick
            # queued its own job.
            return None
        ts = await reply_once(
            team,
            trigger,
            picker_text(trigger.user),
            PICKER_EVENT_TYPE,
            blocks=picker_blocks(trigger.user, listed),
        )
        await place_picker(
            self.store, PLATFORM, delivery_id, picker_ref(trigger.team_id, trigger.channel, ts)
        )
        log.info(
            "slack %s: no repository named; picker of %d posted", trigger.thread_key, len(listed)
        )
        return None

    async def options(self, query: str) -> list[dict[str, Any]]:
        """The picker's options for what was typed (Bolt's options handler): names
        containing it, those starting with it first, at most Slack's 100."""
        hosts = self.hosts()
        listed = await reachable_repositories(hosts) if hosts else []
        typed = query.strip().lower()
        found = [r for r in listed if typed in r.name.lower()]
        found.sort(key=lambda r: (not r.name.lower().startswith(typed), r.name.lower()))
        return options_of(found[:MAX_OPTIONS])
