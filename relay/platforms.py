"""The platforms this relay speaks to, in one list.

Adding a platform is one package in bots/ (see docs/ARCHITECTURE.md) and one entry
here. Each entry's processor kinds are registered, enabled or not, so that stored
callbacks always load; each is built from the settings by relay.app.
"""

from __future__ import annotations

from bots.github.platform import GITHUB
from bots.gitlab.platform import GITLAB
from bots.platform import PlatformPackage
from bots.slack.platform import SLACK
from db.callbacks import register_processor_kind
from processors.base import ConversationCallbackProcessor
from processors.webhook import WebhookProcessor

PLATFORMS: tuple[PlatformPackage, ...] = (SLACK, GITHUB, GITLAB)


def processor_kinds() -> list[type[ConversationCallbackProcessor]]:
    """Every kind a stored callback may name: the API's webhook receivers', and each
    platform's."""
    return [WebhookProcessor, *(kind for entry in PLATFORMS for kind in entry.processor_kinds)]


def register_processor_kinds() -> None:
    for cls in processor_kinds():
        register_processor_kind(cls.processor_kind, cls)
