"""The Slack app manifest (manifests/slack.yaml), filled in for one deployment.

The manifest is the single source of the bot's scopes and events: the OAuth install
asks for `bot_scopes()`, so the app Slack creates and the install can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "manifests" / "slack.yaml"

PUBLIC_URL_PLACEHOLDER = "${PUBLIC_URL}"


def render_manifest(public_url: str) -> str:
    """The manifest's YAML text with the deployment's URL in it, comments kept."""
    # Substituting in the text, not in parsed YAML, keeps the comments that say
    # why each scope is there.
    return MANIFEST_PATH.read_text(encoding="utf-8").replace(
        PUBLIC_URL_PLACEHOLDER, public_url.rstrip("/")
    )


def render_socket_mode_manifest() -> str:
    """The manifest of an app that receives its events over Socket Mode: no request
    URL nor OAuth redirect (it needs no public URL), `socket_mode_enabled: true`."""
    lines = []
    for line in MANIFEST_PATH.read_text(encoding="utf-8").splitlines(keepends=True):
        if PUBLIC_URL_PLACEHOLDER in line or line.strip() == "redirect_urls:":
            continue
        lines.append(line.replace("socket_mode_enabled: false", "socket_mode_enabled: true"))
    return "".join(lines)


def load_manifest(public_url: str) -> dict[str, Any]:
    import yaml  # with the first manifest read, not at start (0.9 MiB of an idle serve)

    manifest: dict[str, Any] = yaml.safe_load(render_manifest(public_url))
    return manifest


def _template() -> dict[str, Any]:
    # Scopes and events do not depend on the URL; any URL will do.
    return load_manifest("https://relay.invalid")


def bot_scopes() -> list[str]:
    """The bot scopes the app is created with, and so the ones the OAuth install asks for."""
    return list(_template()["oauth_config"]["scopes"]["bot"])


def bot_events() -> list[str]:
    return list(_template()["settings"]["event_subscriptions"]["bot_events"])
