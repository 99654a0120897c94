"""manifests/github-app.json, filled in by bots.github.manifest and printed by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bots.github.manifest import MANIFEST_PATH, manifest_text, render_manifest
from relay.settings import Settings

PUBLIC_URL = "https://relay.example.com"
CLI = Path(sys.executable).parent / "agent-relay"

EXPECTED_PERMISSIONS = {
    "issues": "write",
    "pull_requests": "write",
    "contents": "write",
    "metadata": "read",
}
# One per trigger (bots/github/triggers.py); installation events come without a subscription.
EXPECTED_EVENTS = [
    "issue_comment",
    "issues",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
]


def test_the_template_is_json_with_placeholders_to_fill() -> None:
    text = MANIFEST_PATH.read_text(encoding="utf-8")
    assert "${PUBLIC_URL}" in text
    json.loads(text)


def test_every_url_points_at_the_relay_and_a_trailing_slash_is_dropped() -> None:
    for public_url in (PUBLIC_URL, PUBLIC_URL + "/"):
        manifest = render_manifest(public_url)
        assert manifest["url"] == "https://relay.example.com/github/setup"
        assert manifest["hook_attributes"] == {
            "url": "https://relay.example.com/github/events",
            "active": True,
        }
        assert manifest["redirect_url"] == "https://relay.example.com/github/setup/callback"
        assert manifest["setup_url"] == "https://relay.example.com/github/setup"
        assert manifest["setup_on_update"] is True
        assert "${" not in json.dumps(manifest)


def test_a_url_with_json_special_characters_keeps_the_manifest_valid() -> None:
    odd = 'https://relay.example.com/a"b\\c'
    text = manifest_text(odd)
    assert json.loads(text)["hook_attributes"]["url"] == odd + "/github/events"


def test_permissions_and_events_are_exactly_what_the_triggers_need() -> None:
    manifest = render_manifest(PUBLIC_URL)
    assert manifest["default_permissions"] == EXPECTED_PERMISSIONS
    assert manifest["default_events"] == EXPECTED_EVENTS
    assert "installation" not in manifest["default_events"]
    assert manifest["public"] is False
    assert manifest["request_oauth_on_install"] is False
    assert manifest["name"] == "OpenHands relay"


def test_the_text_is_pretty_json_of_the_rendered_manifest() -> None:
    text = manifest_text(PUBLIC_URL)
    assert text.endswith("}\n")
    assert '\n  "name": "OpenHands relay",' in text
    assert json.loads(text) == render_manifest(PUBLIC_URL)


def _run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return subprocess.run(
        [str(CLI), "github", "manifest", *args],
        cwd=tmp_path,
        env={**inherited, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_the_manifest_for_public_url_or_the_option(tmp_path: Path) -> None:
    from_option = _run_cli(tmp_path, "--public-url", PUBLIC_URL)
    assert from_option.returncode == 0, from_option.stderr
    assert json.loads(from_option.stdout) == render_manifest(PUBLIC_URL)

    from_setting = _run_cli(tmp_path, PUBLIC_URL="https://other.example.com/")
    assert from_setting.returncode == 0, from_setting.stderr
    manifest = json.loads(from_setting.stdout)
    assert manifest["hook_attributes"]["url"] == "https://other.example.com/github/events"


def test_cli_without_a_public_url_exits_2(tmp_path: Path) -> None:
    result = _run_cli(tmp_path)
    assert result.returncode == 2
    assert "set PUBLIC_URL or pass --public-url" in result.stderr
    assert result.stdout == ""
