"""The project webhook GitLab needs (manifests/gitlab-webhook.yaml), made or mended.

`agent-relay gitlab install-webhook --project group/name` runs `install_webhook`:
a project hook whose URL is this relay's `/gitlab/events` is created when there is
none, updated when its events differ from the manifest, and left alone otherwise,
so running it twice changes nothing. GitLab never shows a hook's secret token, so
an unchanged hook keeps its token unless the caller asks for it to be sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bots.gitlab.api import GitlabApi
from bots.gitlab.inbound import EVENTS_PATH

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "manifests" / "gitlab-webhook.yaml"


class HookChange(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class HookOutcome:
    change: HookChange
    hook_id: int
    url: str
    # The project's id, as GitLab reports it with the hook (0 when it does not).
    project_id: int = 0


def hook_events() -> dict[str, bool]:
    """Which events the hook sends, as the project hooks API names them."""
    import yaml  # with the first hook made, not at start (0.9 MiB of an idle serve)

    events: dict[str, Any] = yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))
    return {name: bool(value) for name, value in events.items()}


def hook_url(public_url: str) -> str:
    return public_url.rstrip("/") + EVENTS_PATH


async def install_webhook(
    api: GitlabApi,
    project: str,
    *,
    public_url: str,
    secret: str,
    resend_secret: bool = False,
) -> HookOutcome:
    url = hook_url(public_url)
    wanted: dict[str, Any] = {"url": url, **hook_events()}
    existing = [hook for hook in await api.project_hooks(project) if hook.get("url") == url]
    if not existing:
        created = await api.add_project_hook(project, {**wanted, "token": secret})
        return HookOutcome(HookChange.CREATED, int(created["id"]), url, _project_id(created))
    hook = existing[0]
    # Only fields the instance reports are compared: an older GitLab that does not
    # know an event kind would otherwise be "updated" on every run.
    differs = any(name in hook and hook[name] != value for name, value in wanted.items())
    if not differs and not resend_secret:
        return HookOutcome(HookChange.UNCHANGED, int(hook["id"]), url, _project_id(hook))
    await api.edit_project_hook(project, int(hook["id"]), {**wanted, "token": secret})
    return HookOutcome(HookChange.UPDATED, int(hook["id"]), url, _project_id(hook))


def _project_id(hook: dict[str, Any]) -> int:
    return int(hook.get("project_id") or 0)
