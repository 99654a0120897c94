"""Doctor's check of GitLab redelivery: can the recorded hooks' delivery logs be read
and their events resent? That needs GitLab 17.4 (the events list came in 17.3, the
resend in 17.4) and the Maintainer role in each project. Where either is missing,
redelivery reports it in its run and changes nothing else; this check says so ahead."""

from __future__ import annotations

import re

from bots.checks import CheckResult, CheckRun, ok, reason, skip, status_of, warn
from bots.gitlab.api import GitlabApi, GitlabHookEvents, gitlab_version
from bots.gitlab.hooks import installed_hooks
from db.job_kinds import PermanentJobError, RetryableJobError

NAME = "gitlab redelivery"
RESEND_SINCE = (17, 4)


def _version(text: str) -> tuple[int, int] | None:
    found = re.match(r"(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


async def redelivery_check(run: CheckRun, api: GitlabApi) -> CheckResult:
    try:
        hooks = await installed_hooks(run.store)
    except Exception as exc:
        return skip(NAME, f"the recorded hooks cannot be read ({type(exc).__name__})")
    if not hooks:
        return skip(
            NAME,
            "no project hook recorded",
            "run `agent-relay gitlab install-webhook --project group/name`",
        )
    try:
        version = await gitlab_version(api)
    except (PermanentJobError, RetryableJobError) as exc:
        return warn(NAME, f"GET /version: {reason(exc)}")
    found = _version(version)
    if found is not None and found < RESEND_SINCE:
        return warn(
            NAME,
            f"GitLab {version} cannot resend hook events (17.4 and later can):"
            " deliveries that fail are not redelivered",
            "upgrade GitLab, or resend failed events from the hook's settings page",
        )
    for hook in hooks:
        try:
            await GitlabHookEvents(api, hook.project_id, hook.hook_id).page(1, per_page=1)
        except (PermanentJobError, RetryableJobError) as exc:
            status = status_of(exc)
            if status == 403:
                return warn(
                    NAME,
                    f"the token's user may not read the events of hook {hook.hook_id}"
                    f" on {hook.project} (HTTP 403)",
                    f"give the token's user the Maintainer role in {hook.project}",
                )
            return warn(NAME, f"hook {hook.hook_id} on {hook.project}: {reason(exc)}")
    projects = ", ".join(sorted({hook.project for hook in hooks}))
    return ok(NAME, f"GitLab {version or '(version unknown)'}; the hooks of {projects} can be read")
