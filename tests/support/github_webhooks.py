"""GitHub webhook deliveries for tests: real example payloads (tests/corpora/github)
with the repository, numbers, comment and sender of the test, and a signed POST."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.fake_github import github_signature_headers

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "github"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / f"{name}.payload.json").read_text())
    return copy.deepcopy(data)


def _place(payload: dict[str, Any], repository: str, installation_id: int, sender: str) -> None:
    owner, name = repository.split("/")
    payload["repository"] |= {
        "full_name": repository,
        "name": name,
        "owner": payload["repository"]["owner"] | {"login": owner},
    }
    payload["installation"] = {"id": installation_id, "node_id": "MDIzOkludGVncmF0aW9u"}
    payload["sender"] = payload["sender"] | {"login": sender, "type": "User"}


def issue_comment(
    repository: str,
    installation_id: int,
    comment: dict[str, Any],
    *,
    sender: str,
    pull_request: bool = False,
) -> dict[str, Any]:
    """`issue_comment.created` for `comment` (as the fake stored it)."""
    payload = example("issue_comment.created.with-installation")
    _place(payload, repository, installation_id, sender)
    number = int(str(comment["issue_url"]).rsplit("/", 1)[1])
    payload["issue"] |= {"number": number}
    if pull_request:
        payload["issue"]["pull_request"] = {"url": f"https://api.test/pulls/{number}"}
    else:
        payload["issue"].pop("pull_request", None)
    payload["comment"] |= {
        "id": comment["id"],
        "body": comment["body"],
        "user": payload["comment"]["user"] | {"login": sender, "type": "User"},
    }
    return payload


def review_comment(
    repository: str, installation_id: int, comment: dict[str, Any], *, number: int, sender: str
) -> dict[str, Any]:
    """`pull_request_review_comment.created` for `comment` (as the fake stored it)."""
    payload = example("pull_request_review_comment.created")
    _place(payload, repository, installation_id, sender)
    payload["pull_request"] |= {"number": number}
    payload["comment"] |= {
        key: comment.get(key)
        for key in ("id", "body", "path", "line", "diff_hunk", "in_reply_to_id")
    }
    payload["comment"]["user"] = payload["comment"]["user"] | {"login": sender, "type": "User"}
    return payload


def labeled(
    repository: str, installation_id: int, number: int, label: str, *, sender: str
) -> dict[str, Any]:
    """`issues.labeled` with `label` on issue `number`."""
    payload = example("issues.labeled")
    _place(payload, repository, installation_id, sender)
    payload["issue"] |= {"number": number}
    payload["label"] = payload["label"] | {"name": label}
    return payload


def installation(action: str, installation_id: int, *, account: str = "acme") -> dict[str, Any]:
    """`installation.{action}` (created, deleted, suspend, unsuspend)."""
    name = "installation.deleted" if action == "deleted" else "installation.created"
    payload = example(name)
    payload["action"] = action
    payload["installation"] |= {"id": installation_id}
    payload["installation"]["account"] = payload["installation"]["account"] | {"login": account}
    return payload


def deliver(
    relay_url: str,
    event: str,
    payload: dict[str, Any],
    secret: str,
    *,
    delivery_id: str | None = None,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = github_signature_headers(
        body, secret, event=event, delivery_id=delivery_id or str(uuid.uuid4())
    )
    return httpx.post(f"{relay_url}/github/events", content=body, headers=headers, timeout=10)
