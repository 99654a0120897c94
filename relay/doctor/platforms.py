"""The platforms' checks, in the order doctor prints them: one list, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bots.checks import PlatformCheck
from bots.github.checks import GithubCheck
from bots.gitlab.checks import GitlabCheck
from bots.slack.checks import SlackCheck

if TYPE_CHECKING:
    from relay.app import Relay


def platform_checks(relay: Relay, *, gitlab_project: str | None) -> list[PlatformCheck]:
    """Each platform's check, bound to the settings (and parts of `relay`) it reads;
    `gitlab_project` names the project whose hook the GitLab check looks at."""
    settings = relay.settings
    return [
        SlackCheck(settings).check,
        GithubCheck(settings, relay.github_source).check,
        GitlabCheck(settings, gitlab_project).check,
    ]
