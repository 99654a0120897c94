"""The Slack interaction intake: payloads parsed, recorded once with their job, modals
opened without recording anything, and the job running the registered handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

from bots.slack.api import SlackApi, SlackTeam
from bots.slack.inbound import build_slack_app
from bots.slack.interactions import (
    SLACK_INTERACTION_JOB,
    Modal,
    SlackInteraction,
    SlackInteractionJob,
    interaction_of,
)
from db.jobs import JobQueue
from db.store import Store
from tests.support.fake_slack import (
    FakeSlack,
    block_actions,
    slack_signature_headers,
    view_submission,
)

TEAM, TOKEN, BOT = "T0CLICK", "xoxb-click", "U0BOT"
SECRET = "interaction-signing-secret"
CHANNEL, THREAD_TS, STATUS_TS = "C0CLICK", "1700000000.000100", "1700000000.000200"
STATUS = {"type": "message", "ts": STATUS_TS, "thread_ts": THREAD_TS, "text": "Working"}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=TOKEN, bot_user_id=BOT, bot_id="B0CLICK")
        yield fake


async def post(app: Any, payload: dict[str, Any]) -> int:
    body = urlencode({"payload": json.dumps(payload)})
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        **{k.lower(): v for k, v in slack_signature_headers(SECRET, body.encode()).items()},
    }
    response = await app.async_dispatch(AsyncBoltRequest(body=body, headers=headers))
    return int(response.status)


async def interaction_jobs(store: Store) -> list[dict[str, Any]]:
    rows = await store.fetch_all(
        "SELECT job_key, payload FROM jobs WHERE kind = :kind ORDER BY id",
        {"kind": SLACK_INTERACTION_JOB.name},
    )
    return [{"key": row["job_key"], "payload": json.loads(row["payload"])} for row in rows]


def app_of(store: Store, slack: FakeSlack, modals: dict[str, Modal] | None = None) -> Any:
    return build_slack_app(
        store=store,
        queue=JobQueue(store),
        signing_secret=SECRET,
        api_url=slack.api_url,
        bot_token=TOKEN,
        modals=modals,
    )


def test_a_click_is_read_with_its_thread_and_a_unique_id() -> None:
    payload = block_actions(
        TEAM, user="U1", channel=CHANNEL, message=STATUS, action_id="relay.stop", value="x"
    )
    interaction = interaction_of(payload)
    assert interaction is not None
    assert interaction.thread_key == f"{TEAM}:{CHANNEL}:{THREAD_TS}"
    assert (interaction.user, interaction.value, interaction.message_ts) == ("U1", "x", STATUS_TS)
    assert interaction.who == "<@U1>"
    again = interaction_of(
        block_actions(TEAM, user="U1", channel=CHANNEL, message=STATUS, action_id="relay.stop")
    )
    assert again is not None and again.delivery_id != interaction.delivery_id


def test_a_menu_choice_is_its_value_and_a_payload_without_team_is_nothing() -> None:
    payload = block_actions(
        TEAM, user="U1", channel=CHANNEL, message=STATUS, action_id="relay.pick", selected="a/b"
    )
    interaction = interaction_of(payload)
    assert interaction is not None and interaction.value == "a/b"
    assert interaction_of({**payload, "team": None}) is None
    assert interaction_of({"type": "shortcut", "team": {"id": TEAM}, "user": {"id": "U"}}) is None


async def test_a_click_is_recorded_once_with_its_job_keyed_by_the_thread(
    store: Store, slack: FakeSlack
) -> None:
    app = app_of(store, slack)
    payload = block_actions(
        TEAM, user="U1", channel=CHANNEL, message=STATUS, action_id="relay.stop", value="stop"
    )

    assert await post(app, payload) == 200
    assert await post(app, payload) == 200  # Slack sent it again: nothing new

    [job] = await interaction_jobs(store)
    assert job["key"] == f"slack:{TEAM}:{CHANNEL}:{THREAD_TS}"
    assert job["payload"]["action_id"] == "relay.stop"
    assert job["payload"]["user"] == "U1"


async def test_a_badly_signed_click_is_refused_and_records_nothing(
    store: Store, slack: FakeSlack
) -> None:
    app = app_of(store, slack)
    payload = block_actions(TEAM, user="U1", channel=CHANNEL, message=STATUS, action_id="relay.x")
    body = urlencode({"payload": json.dumps(payload)})
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        **{k.lower(): v for k, v in slack_signature_headers("wrong", body.encode()).items()},
    }
    response = await app.async_dispatch(AsyncBoltRequest(body=body, headers=headers))
    assert response.status == 401
    assert await interaction_jobs(store) == []


async def test_a_control_with_a_modal_opens_it_and_only_its_submission_counts(
    store: Store, slack: FakeSlack
) -> None:
    app = app_of(store, slack, {"relay.reject": Modal("Reject", "Why?", "Reject")})
    click = block_actions(
        TEAM, user="U1", channel=CHANNEL, message=STATUS, action_id="relay.reject", value="7"
    )

    assert await post(app, click) == 200
    assert await interaction_jobs(store) == []
    [view] = slack.views()
    assert view["callback_id"] == "relay.reject"

    submitted = view_submission(TEAM, user="U1", view=view, reason="  wrong file  ")
    assert await post(app, submitted) == 200
    assert await post(app, submitted) == 200
    [job] = await interaction_jobs(store)
    interaction = SlackInteraction.model_validate(job["payload"])
    assert (interaction.action_id, interaction.value, interaction.reason) == (
        "relay.reject",
        "7",
        "wrong file",
    )
    assert interaction.thread_key == f"{TEAM}:{CHANNEL}:{THREAD_TS}"
    assert interaction.message_ts == STATUS_TS


async def test_the_job_runs_the_handler_registered_for_the_action(
    store: Store, slack: FakeSlack
) -> None:
    seen: list[tuple[str, str]] = []

    async def on_stop(interaction: SlackInteraction, team: SlackTeam) -> None:
        seen.append((interaction.user, team.team_id))

    queue = JobQueue(store)
    job = SlackInteractionJob(SlackApi(slack.api_url, bot_token=TOKEN), {"relay.stop": on_stop})
    for action_id in ("relay.stop", "relay.unknown"):
        payload = block_actions(
            TEAM, user="U1", channel=CHANNEL, message=STATUS, action_id=action_id
        )
        interaction = interaction_of(payload)
        assert interaction is not None
        await queue.enqueue(SLACK_INTERACTION_JOB, interaction, key="k")
    while (claimed := await queue.claim()) is not None:
        await job.handle(claimed)
        await queue.complete(claimed)
    assert seen == [("U1", TEAM)]
