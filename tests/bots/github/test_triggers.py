"""Which GitHub deliveries trigger the agent: conformance on real payloads, then the rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from gidgethub.sansio import Event

from bots.github.inbound import job_key
from bots.github.triggers import GithubTrigger, TriggerKind, is_bot, trigger_of

CORPUS = Path(__file__).resolve().parents[2] / "corpora" / "github"
MENTION = "@openhands"
LABEL = "openhands"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / f"{name}.payload.json").read_text())
    return data


def decide(event: str, payload: dict[str, Any], slug: str | None = "openhands-relay") -> Any:
    return trigger_of(event, payload, mention=MENTION, trigger_label=LABEL, app_slug=slug)


def with_body(payload: dict[str, Any], field: str, body: str | None) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    changed[field]["body"] = body
    return changed


# -- conformance: every example parses, and its decision is right --------------------------

CORPUS_FILES = sorted(p.name.removesuffix(".payload.json") for p in CORPUS.glob("*.json"))


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_example_parses_through_gidgethub(name: str) -> None:
    body = (CORPUS / f"{name}.payload.json").read_bytes()
    event_name = name.split(".")[0]
    headers = {
        "content-type": "application/json",
        "x-github-event": event_name,
        "x-github-delivery": "d-1",
    }
    event = Event.from_http(headers, body)
    assert event.event == event_name
    assert isinstance(event.data, dict)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_no_example_triggers_as_written(name: str) -> None:
    # None of the examples mentions the bot or carries the trigger label.
    assert decide(name.split(".")[0], load(name)) is None


@pytest.mark.parametrize(
    ("name", "field", "kind", "pull"),
    [
        ("issue_comment.created", "comment", TriggerKind.COMMENT, False),
        ("issue_comment.created.with-installation", "comment", TriggerKind.COMMENT, False),
        ("issue_comment.created.with-organization", "comment", TriggerKind.COMMENT, False),
        ("pull_request_review_comment.created", "comment", TriggerKind.REVIEW_COMMENT, True),
        (
            "pull_request_review_comment.created.with-organization",
            "comment",
            TriggerKind.REVIEW_COMMENT,
            True,
        ),
        ("pull_request_review.submitted", "review", TriggerKind.REVIEW, True),
    ],
)
def test_examples_with_a_mention_trigger(
    name: str, field: str, kind: TriggerKind, pull: bool
) -> None:
    payload = with_body(load(name), field, "@OpenHands please fix the flaky test")
    trigger = decide(name.split(".")[0], payload)
    assert isinstance(trigger, GithubTrigger)
    assert trigger.kind is kind
    assert trigger.is_pull_request is pull
    assert trigger.repository == "Codertocat/Hello-World"
    assert trigger.sender == "Codertocat"
    assert trigger.text == "please fix the flaky test"
    assert trigger.source_id == payload[field]["id"]


def test_an_edited_comment_with_a_mention_does_not_trigger() -> None:
    payload = with_body(load("issue_comment.edited"), "comment", "@openhands fix it")
    assert decide("issue_comment", payload) is None


@pytest.mark.parametrize("name", ["issues.labeled", "issues.labeled.with-organization"])
def test_the_trigger_label_triggers_and_other_labels_do_not(name: str) -> None:
    payload = load(name)
    assert decide("issues", payload) is None  # the example's label is "bug"
    payload["label"]["name"] = "OpenHands"
    trigger = decide("issues", payload)
    assert trigger is not None
    assert trigger.kind is TriggerKind.LABEL
    assert trigger.text == ""
    assert trigger.source_id is None
    assert trigger.thread_key == f"Codertocat/Hello-World#{payload['issue']['number']}"


def test_a_pull_request_label_triggers() -> None:
    payload = load("pull_request_review.submitted")
    payload = {
        "action": "labeled",
        "label": {"name": LABEL},
        "pull_request": payload["pull_request"],
        "repository": payload["repository"],
        "sender": payload["sender"],
        "installation": {"id": 7},
    }
    trigger = decide("pull_request", payload)
    assert trigger is not None
    assert (trigger.kind, trigger.is_pull_request, trigger.installation_id) == (
        TriggerKind.LABEL,
        True,
        7,
    )


# -- thread keys -------------------------------------------------------------------------


def test_a_review_comment_lives_in_its_review_thread() -> None:
    payload = with_body(load("pull_request_review_comment.created"), "comment", "@openhands hi")
    top = decide("pull_request_review_comment", payload)
    assert top.review_thread_id == payload["comment"]["id"]
    assert top.thread_key == f"Codertocat/Hello-World#2/r{payload['comment']['id']}"
    payload["comment"]["in_reply_to_id"] = 111
    reply = decide("pull_request_review_comment", payload)
    assert reply.thread_key == "Codertocat/Hello-World#2/r111"


def test_issue_comments_and_reviews_share_the_issue_thread() -> None:
    comment = decide(
        "issue_comment", with_body(load("issue_comment.created"), "comment", "@openhands a")
    )
    review = decide(
        "pull_request_review",
        with_body(load("pull_request_review.submitted"), "review", "@openhands b"),
    )
    assert comment.thread_key == "Codertocat/Hello-World#1"
    assert review.thread_key == "Codertocat/Hello-World#2"
    assert comment.review_thread_id is None and review.review_thread_id is None


# -- who and what never triggers ----------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        {"login": "dependabot[bot]", "type": "Bot"},
        {"login": "openhands-relay[bot]", "type": "Bot"},
        {"login": "OpenHands-Relay[bot]", "type": "User"},
        {"login": "renovate[bot]", "type": "User"},
    ],
)
def test_bots_and_the_app_itself_never_trigger(sender: dict[str, str]) -> None:
    payload = with_body(load("issue_comment.created"), "comment", "@openhands fix it")
    payload["sender"] = sender
    assert decide("issue_comment", payload) is None
    assert is_bot(sender, "openhands-relay")


@pytest.mark.parametrize(
    "body",
    [
        "> @openhands fix it\n\nI agree with the above",
        "the bot is called `@openhands`",
        "```\n@openhands fix it\n```",
        "mail me@openhands.dev",
        "@openhands-bot fix it",
        "",
        None,
    ],
)
def test_quoted_code_and_lookalike_mentions_do_not_trigger(body: str | None) -> None:
    payload = with_body(load("issue_comment.created"), "comment", body)
    assert decide("issue_comment", payload) is None


def test_a_review_without_a_body_does_not_trigger() -> None:
    assert (
        decide(
            "pull_request_review", with_body(load("pull_request_review.submitted"), "review", None)
        )
        is None
    )


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ("issue_comment", "deleted"),
        ("pull_request_review_comment", "edited"),
        ("pull_request_review", "edited"),
        ("issues", "unlabeled"),
        ("issues", "opened"),
    ],
)
def test_other_actions_do_not_trigger(event: str, action: str) -> None:
    payload = with_body(load("issue_comment.created"), "comment", "@openhands fix")
    payload["action"] = action
    payload["label"] = {"name": LABEL}
    assert decide(event, payload) is None


# -- which deliveries become jobs ---------------------------------------------------------


def event_of(name: str, data: dict[str, Any]) -> Event:
    return Event(data, event=name.split(".")[0], delivery_id="d-1")


@pytest.mark.parametrize(
    "name",
    [
        "installation.created",
        "installation.deleted",
        "installation_repositories.added",
        "installation_repositories.removed",
    ],
)
def test_installation_news_is_queued_per_installation(name: str) -> None:
    data = load(name)
    key = job_key(event_of(name, data), mention=MENTION, trigger_label=LABEL)
    assert key == f"github:installation:{data['installation']['id']}"


def test_a_mention_is_queued_per_thread_and_noise_is_not() -> None:
    data = with_body(load("issue_comment.created"), "comment", "@openhands go")
    key = job_key(event_of("issue_comment", data), mention=MENTION, trigger_label=LABEL)
    assert key == "github:Codertocat/Hello-World#1"
    noise = load("issue_comment.created")
    assert job_key(event_of("issue_comment", noise), mention=MENTION, trigger_label=LABEL) is None
