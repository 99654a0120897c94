"""The GitHub App manifest (manifests/github-app.json), filled in for one deployment.

The setup page (bots.github.setup) posts it to GitHub, which creates the app from it;
`agent-relay github manifest` prints it for people who create the app by hand. JSON
has no comments, so the reasons for what it asks for are kept here.

Permissions, each for something the relay does:
- issues: write - the "on it" comment and the answer on issues and on pull requests
  (a pull request's conversation is its issue), the `eyes` reaction, and reading the
  issue, its comments and its labels for the agent's context.
- pull_requests: write - replies in a review-comment thread
  (`POST /repos/{o}/{r}/pulls/{n}/comments/{id}/replies`), reactions on review
  comments, a pull request's branches and review comments for the context, and the
  pull request the relay opens for the agent's work, with its reviewer.
- contents: write - each conversation's checkout of the repository and the agent's
  pushes to its work branch (processors.workspace); the relay narrows every token it
  hands the agent to one repository, and to `contents: read` for a fork's pull
  request and with PULL_REQUESTS=off. Also the repository's files for the context.
- metadata: read - repository basics and the collaborator permission check
  (`GET /repos/{o}/{r}/collaborators/{login}/permission`); every app that has
  repository permissions gets it anyway.
- workflows is not asked for: GitHub refuses a push that changes `.github/workflows/`
  without it, which keeps the agent's pushes away from CI.

Events, exactly the ones a trigger listens to (bots/github/triggers.py):
- issue_comment - a mention in a comment on an issue or a pull request;
- issues - the trigger label added to an issue;
- pull_request - the trigger label added to a pull request;
- pull_request_review - a mention in a submitted review's body;
- pull_request_review_comment - a mention in an inline review comment.

`installation` and `installation_repositories` are missing on purpose: GitHub delivers
them to every GitHub App whether or not it subscribes, and there is no subscription to
ask for (GitHub's "Webhook events and payloads" reference says so for both events), so
the installations table stays current without them being listed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "manifests" / "github-app.json"

PUBLIC_URL_PLACEHOLDER = "${PUBLIC_URL}"


def _fill(value: Any, public_url: str) -> Any:
    # Filling parsed strings, not the raw text, keeps the JSON valid whatever
    # characters the URL holds.
    if isinstance(value, str):
        return value.replace(PUBLIC_URL_PLACEHOLDER, public_url)
    if isinstance(value, list):
        return [_fill(item, public_url) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, public_url) for key, item in value.items()}
    return value


def render_manifest(public_url: str) -> dict[str, Any]:
    """The manifest with the deployment's URL (without a trailing slash) in every URL."""
    template = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    manifest: dict[str, Any] = _fill(template, public_url.rstrip("/"))
    return manifest


def manifest_text(public_url: str) -> str:
    """The filled-in manifest as pretty JSON, ending with a newline."""
    return json.dumps(render_manifest(public_url), indent=2) + "\n"
