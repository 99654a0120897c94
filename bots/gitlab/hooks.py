"""The project hooks `agent-relay gitlab install-webhook` made or mended, remembered
so that their delivery logs can be read for deliveries that failed
(bots/gitlab/redelivery.py). Kept as installations of the `gitlab` platform (no
credentials: the hook's secret is GITLAB_WEBHOOK_SECRET)."""

from __future__ import annotations

from dataclasses import dataclass

from bots.gitlab import PLATFORM
from db.installations import list_installations, save_installation
from db.secrets import SecretBox
from db.store import Store

_PREFIX = "hook:"


@dataclass(frozen=True)
class InstalledHook:
    project_id: int
    project: str  # its path, group/name
    hook_id: int
    url: str


async def remember_hook(store: Store, hook: InstalledHook) -> None:
    await save_installation(
        store,
        SecretBox(None),  # nothing to encrypt: no credentials
        platform=PLATFORM,
        account_id=f"{_PREFIX}{hook.project_id}:{hook.hook_id}",
        details={
            "project_id": hook.project_id,
            "project": hook.project,
            "hook_id": hook.hook_id,
            "url": hook.url,
        },
        credentials=None,
    )


async def installed_hooks(store: Store) -> list[InstalledHook]:
    return [
        InstalledHook(
            project_id=int(row.details["project_id"]),
            project=str(row.details.get("project") or row.details["project_id"]),
            hook_id=int(row.details["hook_id"]),
            url=str(row.details.get("url") or ""),
        )
        for row in await list_installations(store, platform=PLATFORM)
        if row.account_id.startswith(_PREFIX)
    ]
