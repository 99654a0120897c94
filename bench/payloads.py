"""The request bytes of every route the benchmarks drive, fresh ids in each.

Each body is serialised once, with @@NAME@@ placeholders, and filled per request by
one join: fresh ids cost microseconds, so the load generator spends its time on HTTP.
Signed routes are signed per request (Slack signs a timestamp too).
"""

from __future__ import annotations

import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from harness import (
    AGENT_SESSION_KEY,
    API_TOKEN,
    CORPORA,
    GITHUB_WEBHOOK_SECRET,
    GITLAB_WEBHOOK_SECRET,
    SLACK_BOT_USER,
    SLACK_SIGNING_SECRET,
    SLACK_TEAM,
    WEBHOOK_SECRET,
    build_request,
)


def run_id() -> str:
    """A random prefix that makes one run's ids differ from every other run's."""
    return os.urandom(10).hex()


def fresh_id(run: str, index: int, tag: int = 0) -> str:
    """32 hex characters, unique per (run, index, tag < 4096); cheap to make."""
    return f"{run[:17]}{tag:03x}{index:012x}"


def as_uuid(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def conversation_id(run: str, index: int) -> str:
    """Conversation ids of one run: 32 hex, unique per (run, index)."""
    return fresh_id(run, index)


class Template:
    """Bytes with @@NAME@@ placeholders, filled by one join."""

    def __init__(self, text: str) -> None:
        pieces = re.split(r"@@(\w+)@@", text)
        self.literals = [piece.encode() for piece in pieces[0::2]]
        self.names = pieces[1::2]

    def fill(self, values: Mapping[str, str]) -> bytes:
        out = [self.literals[0]]
        for name, literal in zip(self.names, self.literals[1:], strict=True):
            out.append(values[name].encode())
            out.append(literal)
        return b"".join(out)


def _corpus_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((CORPORA / "openhands-agent-server" / name).read_text())
    return event


# The agent-server's batch at the end of a run (FinishAction, its observation,
# execution_status finished, stats): 4 events, about 2.3 KB, one state-change job.
AGENT_BATCH = [
    _corpus_event("event_action_FinishAction.json"),
    _corpus_event("event_observation_FinishObservation.json"),
    _corpus_event("event_state_execution_status_finished.json"),
    _corpus_event("event_state_stats.json"),
]
_AGENT_TEMPLATE = Template(
    json.dumps([{**event, "id": f"@@E{number}@@"} for number, event in enumerate(AGENT_BATCH)])
)


def agent_events_request(conversation: str) -> bytes:
    """POST /agent/events/{id}: the finish batch with fresh event ids."""
    # Event ids: the conversation's id with characters 17-19 replaced by the event's
    # number (fresh_id puts its tag there), unique per conversation and event.
    body = _AGENT_TEMPLATE.fill(
        {
            f"E{number}": as_uuid(f"{conversation[:17]}e{number:02x}{conversation[20:]}")
            for number in range(4)
        }
    )
    return build_request(
        "POST",
        f"/agent/events/{conversation}",
        body,
        {"Content-Type": "application/json", "X-Session-API-Key": AGENT_SESSION_KEY},
    )


_SLACK_TEMPLATE = Template(
    json.dumps(
        {
            "token": "bench-verification-token",
            "team_id": SLACK_TEAM,
            "api_app_id": "ABENCH",
            "event": {
                "type": "app_mention",
                "user": "UHUMAN01",
                "text": f"<@{SLACK_BOT_USER}> please summarise why the build of @@N@@ failed",
                "ts": "@@TS@@",
                "channel": "CBENCH01",
                "event_ts": "@@TS@@",
                "channel_type": "channel",
                "client_msg_id": "@@MSG@@",
            },
            "type": "event_callback",
            "event_id": "@@EVENT@@",
            "event_time": 1_800_000_000,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": SLACK_TEAM,
                    "user_id": SLACK_BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-bench-@@MSG@@",
        }
    )
)


def slack_request(index: int, run: str) -> bytes:
    """POST /slack/events: a signed app_mention event_callback (about 0.9 KB), fresh
    event_id and thread (its ts)."""
    body = _SLACK_TEMPLATE.fill(
        {
            "N": str(index),
            "TS": f"{1_800_000_000 + index // 1000}.{index % 1000:06d}",
            "MSG": as_uuid(fresh_id(run, index, 1)),
            "EVENT": f"Ev{fresh_id(run, index, 2).upper()}",
        }
    )
    stamp = str(int(time.time()))
    signature = hmac.digest(
        SLACK_SIGNING_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, "sha256"
    ).hex()
    return build_request(
        "POST",
        "/slack/events",
        body,
        {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={signature}",
        },
    )


def _github_template() -> Template:
    payload = json.loads(
        (CORPORA / "github" / "issue_comment.created.with-installation.payload.json").read_text()
    )
    payload["comment"]["body"] = "@openhands please fix the flaky test in this issue"
    payload["comment"]["id"] = "@@COMMENT@@"
    payload["issue"]["number"] = "@@NUMBER@@"
    text = json.dumps(payload)
    return Template(
        text.replace('"@@COMMENT@@"', "@@COMMENT@@").replace('"@@NUMBER@@"', "@@NUMBER@@")
    )


_GITHUB_TEMPLATE = _github_template()


def github_request(index: int, run: str) -> bytes:
    """POST /github/events: a signed issue_comment.created with a mention (octokit's
    example, about 15 KB), fresh X-GitHub-Delivery, comment id and issue number."""
    body = _GITHUB_TEMPLATE.fill(
        {"COMMENT": str(900_000_000 + index), "NUMBER": str(10_000 + index)}
    )
    signature = hmac.digest(GITHUB_WEBHOOK_SECRET.encode(), body, "sha256").hex()
    return build_request(
        "POST",
        "/github/events",
        body,
        {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/bench",
            "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": as_uuid(fresh_id(run, index, 3)),
            "X-Hub-Signature-256": f"sha256={signature}",
        },
    )


def _gitlab_template() -> Template:
    project = {
        "id": 4242,
        "name": "service",
        "description": "A project of the benchmark",
        "web_url": "https://gitlab.example.test/bench/service",
        "avatar_url": None,
        "git_ssh_url": "git@gitlab.example.test:bench/service.git",
        "git_http_url": "https://gitlab.example.test/bench/service.git",
        "namespace": "bench",
        "visibility_level": 0,
        "path_with_namespace": "bench/service",
        "default_branch": "main",
        "homepage": "https://gitlab.example.test/bench/service",
        "url": "git@gitlab.example.test:bench/service.git",
    }
    note = "@openhands please look at why the nightly job times out"
    payload = {
        "object_kind": "note",
        "event_type": "note",
        "user": {
            "id": 17,
            "name": "Dana Developer",
            "username": "dana",
            "avatar_url": None,
            "email": "[REDACTED]",
        },
        "project_id": 4242,
        "project": project,
        "repository": {
            "name": "service",
            "url": project["url"],
            "description": project["description"],
            "homepage": project["homepage"],
        },
        "object_attributes": {
            "attachment": None,
            "author_id": 17,
            "created_at": "2026-01-05 10:00:00 UTC",
            "discussion_id": "@@DISCUSSION@@",
            "id": "@@NOTE@@",
            "note": note,
            "noteable_type": "Issue",
            "project_id": 4242,
            "system": False,
            "type": None,
            "updated_at": "2026-01-05 10:00:00 UTC",
            "description": note,
            "internal": False,
            "action": "create",
            "url": "https://gitlab.example.test/bench/service/-/issues/@@IID@@#note_@@NOTE@@",
        },
        "issue": {
            "id": 77001,
            "iid": "@@IID@@",
            "title": "Nightly job times out",
            "description": "Since Monday the nightly job stops after 60 minutes.",
            "author_id": 17,
            "project_id": 4242,
            "created_at": "2026-01-02 09:00:00 UTC",
            "updated_at": "2026-01-05 10:00:00 UTC",
            "state": "opened",
            "labels": [],
            "assignee_ids": [],
            "confidential": False,
            "url": "https://gitlab.example.test/bench/service/-/issues/@@IID@@",
        },
    }
    text = json.dumps(payload)
    return Template(text.replace('"@@NOTE@@"', "@@NOTE@@").replace('"@@IID@@"', "@@IID@@"))


_GITLAB_TEMPLATE = _gitlab_template()


def gitlab_request(index: int, run: str) -> bytes:
    """POST /gitlab/events: a Note Hook with a mention (about 2 KB), X-Gitlab-Token,
    fresh X-Gitlab-Event-UUID, note id and issue."""
    body = _GITLAB_TEMPLATE.fill(
        {
            "NOTE": str(5_000_000 + index),
            "IID": str(1 + index),
            "DISCUSSION": fresh_id(run, index, 4) + "00000000",
        }
    )
    return build_request(
        "POST",
        "/gitlab/events",
        body,
        {
            "Content-Type": "application/json",
            "User-Agent": "GitLab/18.0.0",
            "X-Gitlab-Event": "Note Hook",
            "X-Gitlab-Token": GITLAB_WEBHOOK_SECRET,
            "X-Gitlab-Event-UUID": as_uuid(fresh_id(run, index, 5)),
            "X-Gitlab-Instance": "https://gitlab.example.test",
        },
    )


def api_request(path: str, payload: Mapping[str, Any]) -> bytes:
    return build_request(
        "POST",
        path,
        json.dumps(payload).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"},
    )


def register_callback_request(conversation: str, receiver_url: str) -> bytes:
    """POST /api/callbacks: a webhook callback on an existing conversation."""
    return api_request(
        "/api/callbacks",
        {
            "conversation_id": conversation,
            "processor": {"kind": "webhook", "url": receiver_url, "secret": WEBHOOK_SECRET},
        },
    )


def start_conversation_request(receiver_url: str, index: int) -> bytes:
    """POST /api/conversations: a new conversation with a webhook callback."""
    return api_request(
        "/api/conversations",
        {
            "prompt": f"Benchmark task {index}: say hello.",
            "callback": {"kind": "webhook", "url": receiver_url, "secret": WEBHOOK_SECRET},
        },
    )
