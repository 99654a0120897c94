"""Doctor's GitLab checks: does GitLab take GITLAB_TOKEN (`GET /user`), and does a
named project's hook send to this relay? Asked through the relay's own GitLab client
and GITLAB_URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from bots.checks import (
    CheckResult,
    CheckRun,
    PublicUrlSettings,
    fail,
    ok,
    reason,
    skip,
    status_of,
    warn,
)
from bots.gitlab.api import GitlabApi
from bots.gitlab.redelivery_check import redelivery_check
from bots.gitlab.setup import hook_events, hook_url
from db.job_kinds import PermanentJobError, RetryableJobError
from db.secrets import secret_text

_GITLAB_DOWN = "check GITLAB_URL and GitLab's status"


class GitlabCheckSettings(PublicUrlSettings, Protocol):
    """The settings GitLab's checks read."""

    gitlab_url: str
    gitlab_token: SecretStr | None

    @property
    def gitlab_enabled(self) -> bool: ...


@dataclass(frozen=True)
class GitlabCheck:
    settings: GitlabCheckSettings

    async def check(self, run: CheckRun) -> list[CheckResult]:
        token = secret_text(self.settings.gitlab_token)
        if not self.settings.gitlab_enabled or token is None:
            return [skip("gitlab", "not configured")]
        api = GitlabApi(run.http, self.settings.gitlab_url, token)
        user = await run.bounded("gitlab", lambda: _user(api), _GITLAB_DOWN)
        return [user, await self._hook(run, api, user), await self._redelivery(run, api, user)]

    async def _redelivery(self, run: CheckRun, api: GitlabApi, user: CheckResult) -> CheckResult:
        if user.status != "ok":
            return skip("gitlab redelivery", "needs a working GITLAB_TOKEN")
        return await run.bounded(
            "gitlab redelivery", lambda: redelivery_check(run, api), _GITLAB_DOWN
        )

    async def _hook(self, run: CheckRun, api: GitlabApi, user: CheckResult) -> CheckResult:
        public, project = self.settings.public_url, run.project
        if project is None:
            return skip(
                "gitlab webhook",
                "no project named",
                "pass --gitlab-project group/name to check its hook",
            )
        if user.status != "ok":
            return skip("gitlab webhook", "needs a working GITLAB_TOKEN")
        if not public:
            return skip("gitlab webhook", "PUBLIC_URL is unset", "set PUBLIC_URL")
        return await run.bounded(
            "gitlab webhook", lambda: _project_hook(api, project, public), _GITLAB_DOWN
        )


async def _user(api: GitlabApi) -> CheckResult:
    try:
        user = await api.bot_user()
    except PermanentJobError as exc:
        status = status_of(exc)
        if status in (401, 403):
            return fail(
                "gitlab",
                f"GET /user refused GITLAB_TOKEN (HTTP {status})",
                "set GITLAB_TOKEN to a valid access token with scope api",
            )
        return fail("gitlab", reason(exc), "check GITLAB_URL (the instance, without /api/v4)")
    except RetryableJobError as exc:
        return fail("gitlab", reason(exc), _GITLAB_DOWN)
    return ok("gitlab", f"token works as @{user.username} (user {user.id})")


async def _project_hook(api: GitlabApi, project: str, public_url: str) -> CheckResult:
    url = hook_url(public_url)
    install = f"run `agent-relay gitlab install-webhook --project {project}`"
    try:
        hooks = await api.project_hooks(project)
    except PermanentJobError as exc:
        return fail(
            "gitlab webhook",
            f"cannot list {project}'s hooks: {reason(exc)}",
            "check the project path; the token's user needs Maintainer to see hooks",
        )
    except RetryableJobError as exc:
        return fail("gitlab webhook", reason(exc), _GITLAB_DOWN)
    ours = [hook for hook in hooks if hook.get("url") == url]
    if not ours:
        return fail("gitlab webhook", f"{project} has no hook to {url}", install)
    hook = ours[0]
    wanted = hook_events()
    differs = sorted(n for n, v in wanted.items() if n in hook and hook[n] != v)
    if differs:
        return warn(
            "gitlab webhook",
            f"hook {hook.get('id')} on {project} differs in {', '.join(differs)}",
            install,
        )
    return ok("gitlab webhook", f"hook {hook.get('id')} on {project} sends to {url}")
