"""manifests/slack.yaml, filled in by bots.slack.manifest."""

from __future__ import annotations

import yaml

from bots.slack.manifest import (
    MANIFEST_PATH,
    bot_events,
    bot_scopes,
    load_manifest,
    render_manifest,
)

PUBLIC_URL = "https://relay.example.com"

EXPECTED_SCOPES = [
    "app_mentions:read",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "reactions:write",
    "users:read",
    "users:read.email",
]
EXPECTED_EVENTS = ["app_mention", "message.im", "app_uninstalled", "tokens_revoked"]


def test_the_manifest_file_is_found_and_has_a_placeholder_to_fill() -> None:
    assert MANIFEST_PATH.is_file()
    assert "${PUBLIC_URL}" in MANIFEST_PATH.read_text(encoding="utf-8")


def test_urls_are_filled_in_and_a_trailing_slash_is_dropped() -> None:
    for public_url in (PUBLIC_URL, PUBLIC_URL + "/"):
        manifest = load_manifest(public_url)
        assert manifest["settings"]["event_subscriptions"]["request_url"] == (
            "https://relay.example.com/slack/events"
        )
        assert manifest["oauth_config"]["redirect_urls"] == [
            "https://relay.example.com/slack/oauth_redirect"
        ]
        assert "${" not in render_manifest(public_url)


def test_rendered_text_keeps_comments_and_parses_to_the_loaded_manifest() -> None:
    text = render_manifest(PUBLIC_URL)
    assert "# chat.postMessage" in text
    assert yaml.safe_load(text) == load_manifest(PUBLIC_URL)


def test_scopes_and_events_are_exactly_the_ones_the_bot_needs() -> None:
    assert bot_scopes() == EXPECTED_SCOPES
    assert bot_events() == EXPECTED_EVENTS
    manifest = load_manifest(PUBLIC_URL)
    assert manifest["oauth_config"]["scopes"] == {"bot": EXPECTED_SCOPES}
    assert "user_events" not in manifest["settings"]["event_subscriptions"]


def test_app_bot_user_and_settings() -> None:
    manifest = load_manifest(PUBLIC_URL)
    assert manifest["display_information"]["name"] == "OpenHands"
    assert manifest["features"]["bot_user"] == {"display_name": "openhands", "always_online": True}
    app_home = manifest["features"]["app_home"]
    assert app_home["messages_tab_enabled"] is True
    assert app_home["messages_tab_read_only_enabled"] is False
    settings = manifest["settings"]
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False
