"""The mention -> reply counters and latencies, moved by real requests and shown on /metrics.

The whole app (create_app, run_worker=False, real SQLite) takes a GitLab delivery and
the agent-server's stop over HTTP; its jobs are run by its own worker, one by one.
GitLab and the agent-server are fakes on loopback.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from agent.events import START_JOB, STATE_CHANGED_JOB
from bots.gitlab.inbound import GITLAB_EVENT_JOB
from db.job_kinds import JobKind
from processors.base import REPLY_JOB
from relay.app import Relay, create_app
from relay.logs import TextFormatter
from relay.settings import Settings
from relay.webhook_timing import platform_of
from tests.support.fake_agent_api import AGENT_API_KEY, FakeAgentServer, LoopbackAgentServer
from tests.support.fake_gitlab import (
    BOT_TOKEN,
    WEBHOOK_SECRET,
    FakeGitlab,
    delivery_headers,
    note_hook,
)

PROJECT_ID = 7
DEVELOPER = 11
REPORTER = 12


@dataclass
class RunningRelay:
    client: httpx.AsyncClient
    relay: Relay

    async def metrics(self) -> dict[str, float]:
        """/metrics as {'name{labels}': value}, labels as prometheus_client writes them."""
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        samples = {}
        for line in response.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    async def run_next(self, kind: JobKind[Any]) -> None:
        job = await self.relay.queue.claim()
        assert job is not None and job.kind == kind.name, job
        await self.relay.worker.run_job(job)
        done = await self.relay.queue.get(job.id)
        assert done is not None and done.status == "done", done


@pytest.fixture
def gitlab() -> Iterator[FakeGitlab]:
    with FakeGitlab() as fake:
        fake.add_project(PROJECT_ID, "acme/widgets")
        fake.add_user(DEVELOPER, "ada")
        fake.add_user(REPORTER, "rita")
        fake.set_access(PROJECT_ID, DEVELOPER, 30)
        fake.set_access(PROJECT_ID, REPORTER, 20)
        fake.add_issue(PROJECT_ID, 3, title="Flaky test", author_id=DEVELOPER)
        yield fake


@pytest.fixture
def agent_server() -> Iterator[FakeAgentServer]:
    fake = FakeAgentServer()
    fake.final_response_text = "Fixed the flaky test."
    yield fake


@pytest.fixture
async def running(
    tmp_path: Path, gitlab: FakeGitlab, agent_server: FakeAgentServer
) -> AsyncIterator[RunningRelay]:
    with LoopbackAgentServer(agent_server) as agent:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=f"sqlite:///{tmp_path / 'relay.db'}",
            agent_server_url=agent.url,
            agent_server_api_key=AGENT_API_KEY,
            gitlab_url=gitlab.url,
            gitlab_token=BOT_TOKEN,
            gitlab_webhook_secret=WEBHOOK_SECRET,
            summary_mode="final_response",
        )
        app: Starlette = create_app(settings, run_worker=False)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://relay.test"
            ) as client:
                yield RunningRelay(client, app.state.relay)


async def deliver_note(running: RunningRelay, gitlab: FakeGitlab, author: int) -> str:
    note = gitlab.add_note(PROJECT_ID, "issue", 3, author_id=author, body="@openhands fix it")
    event_uuid = str(uuid.uuid4())
    response = await running.client.post(
        "/gitlab/events",
        content=json.dumps(note_hook(gitlab, note)).encode(),
        headers=delivery_headers("Note Hook", event_uuid=event_uuid),
    )
    assert response.status_code == 202, response.text
    return event_uuid


class TextLines(logging.Handler):
    """The INFO lines of agent-relay's loggers, formatted as LOG_FORMAT=text writes them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(TextFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def text_lines() -> Iterator[TextLines]:
    handler = TextLines()
    loggers = [logging.getLogger(name) for name in ("agent", "bots", "processors", "relay")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def delta(before: dict[str, float], after: dict[str, float], sample: str) -> float:
    return after.get(sample, 0.0) - before.get(sample, 0.0)


async def test_a_mention_s_way_to_its_reply_moves_every_counter_and_latency(
    running: RunningRelay,
    gitlab: FakeGitlab,
    agent_server: FakeAgentServer,
    text_lines: TextLines,
) -> None:
    before = await running.metrics()

    delivery = await deliver_note(running, gitlab, DEVELOPER)
    await running.run_next(GITLAB_EVENT_JOB)
    await running.run_next(START_JOB)
    [conversation_id] = agent_server.conversations
    stop = {"observation": "agent_state_changed", "extras": {"agent_state": "finished"}, "id": 1}
    answer = await running.client.post(
        f"/agent/events/{conversation_id}",
        json=stop,
        headers={"X-Session-API-Key": AGENT_API_KEY},
    )
    assert answer.status_code == 200
    await running.run_next(STATE_CHANGED_JOB)
    await running.run_next(REPLY_JOB)

    after = await running.metrics()
    assert any(
        "Fixed the flaky test." in note["body"] for note in gitlab.notes(PROJECT_ID, "issue", 3)
    )
    moved = {
        'agent_relay_events_received_total{outcome="queued",platform="gitlab"}': 1.0,
        'agent_relay_mentions_total{outcome="accepted",platform="gitlab"}': 1.0,
        'agent_relay_replies_total{outcome="delivered",platform="gitlab"}': 1.0,
        'agent_relay_webhook_ack_seconds_count{platform="gitlab"}': 1.0,
        'agent_relay_webhook_ack_seconds_count{platform="agent"}': 1.0,
        'agent_relay_mention_to_agent_seconds_count{platform="gitlab"}': 1.0,
        'agent_relay_stop_to_reply_seconds_count{platform="gitlab"}': 1.0,
    }
    assert {sample: delta(before, after, sample) for sample in moved} == moved
    # One grep for the delivery id follows the mention from webhook to reply, and the
    # lines after the webhook's name the conversation too.
    followed = [line for line in text_lines.lines if f"delivery={delivery}" in line]
    for step in (
        r"gitlab delivery \S+ queued",
        r"gitlab \S+: started conversation",
        r"conversation \w+ started",
        r"callback \d+ closed as completed",
        r"reply of callback \d+ delivered",
    ):
        assert any(re.search(step, line) for line in followed), (step, text_lines.lines)
    assert all(f"conversation={conversation_id}" in line for line in followed[1:]), followed
    # The latencies are real durations: short here, and never negative.
    for histogram in ("mention_to_agent", "stop_to_reply", "webhook_ack"):
        total = delta(before, after, f'agent_relay_{histogram}_seconds_sum{{platform="gitlab"}}')
        assert 0 <= total < 30


async def test_a_refused_mention_and_a_repeated_delivery_are_counted_as_such(
    running: RunningRelay, gitlab: FakeGitlab
) -> None:
    before = await running.metrics()

    await deliver_note(running, gitlab, REPORTER)
    await running.run_next(GITLAB_EVENT_JOB)
    note = gitlab.add_note(PROJECT_ID, "issue", 3, author_id=REPORTER, body="no mention here")
    ignored = await running.client.post(
        "/gitlab/events",
        content=json.dumps(note_hook(gitlab, note)).encode(),
        headers=delivery_headers("Note Hook"),
    )

    after = await running.metrics()
    assert ignored.status_code == 200
    prefix = "agent_relay_events_received_total"
    assert delta(before, after, f'{prefix}{{outcome="queued",platform="gitlab"}}') == 1
    assert delta(before, after, f'{prefix}{{outcome="ignored",platform="gitlab"}}') == 1
    assert (
        delta(
            before, after, 'agent_relay_mentions_total{outcome="no_permission",platform="gitlab"}'
        )
        == 1
    )
    assert (
        delta(before, after, 'agent_relay_mentions_total{outcome="accepted",platform="gitlab"}')
        == 0
    )


async def test_metrics_lists_every_flow_metric_with_its_help(running: RunningRelay) -> None:
    text = (await running.client.get("/metrics")).text

    for name, kind in (
        ("agent_relay_events_received_total", "counter"),
        ("agent_relay_mentions_total", "counter"),
        ("agent_relay_replies_total", "counter"),
        ("agent_relay_webhook_ack_seconds", "histogram"),
        ("agent_relay_mention_to_agent_seconds", "histogram"),
        ("agent_relay_stop_to_reply_seconds", "histogram"),
    ):
        assert re.search(rf"^# TYPE {name} {kind}$", text, re.M), name
        assert re.search(rf"^# HELP {name} \S", text, re.M), name
    # The database gauges are still there, in the same answer.
    assert re.search(r"^agent_relay_jobs\{status=\"queued\"\} ", text, re.M)


def test_only_the_webhook_routes_are_timed() -> None:
    timed: dict[str, Any] = {
        "/slack/events": "slack",
        "/github/events": "github",
        "/gitlab/events": "gitlab",
        "/agent/events/" + uuid.uuid4().hex: "agent",
        "/api/conversations": None,
        "/metrics": None,
        "/slack/install": None,
    }
    assert {path: platform_of(path) for path in timed} == timed
