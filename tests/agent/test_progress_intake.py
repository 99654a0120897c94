"""The intake counts a turn's steps and queues coalesced, throttled status edits,
and only for a conversation whose turn has a status message (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import httpx

from agent.events import PROGRESS_JOB, step_of
from db.store import Store
from tests.agent.test_intake import CONVERSATION_HEX, KEY_HEADERS, client  # noqa: F401

ID = CONVERSATION_HEX


def action(index: int, command: str = "pytest -q", summary: str | None = None) -> dict[str, Any]:
    return {
        "id": f"action-{index}",
        "kind": "ActionEvent",
        "source": "agent",
        "tool_name": "terminal",
        "summary": summary if summary is not None else f'terminal: {{"command": "{command}"}}',
        "action": {"kind": "TerminalAction", "command": command},
    }


async def arm(store: Store, *, edited_at: float | None = None) -> None:
    await store.execute(
        "INSERT INTO agent_conversations (conversation_id, updated_at, status_callback_id,"
        " status_interval, status_edited_at) VALUES (:id, 0, 7, 10, :edited)",
        {"id": ID, "edited": edited_at},
    )


async def progress_jobs(store: Store) -> list[dict[str, Any]]:
    return await store.fetch_all(
        "SELECT job_key, idempotency_key, run_after, created_at FROM jobs WHERE kind = :kind",
        {"kind": PROGRESS_JOB.name},
    )


async def post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:  # noqa: F811
    response = await client.post(f"/agent/events/{ID}", json=events, headers=KEY_HEADERS)
    assert response.status_code == 200, response.text


def test_step_shows_the_summary_else_the_tool_and_its_command() -> None:
    assert step_of(action(1, summary="Run the unit tests")) == "Run the unit tests"
    assert step_of(action(1, "pytest -q\nsecond line")) == "terminal: pytest -q"
    assert step_of(action(1, "echo ghp_" + "a" * 36)) == "terminal: echo ***"
    long = step_of(action(1, "x" * 500))
    assert long is not None and len(long) == 120 and long.endswith("…")
    finish = {**action(1), "action": {"kind": "FinishAction", "message": "done"}}
    assert step_of(finish) is None
    assert step_of({**action(1), "source": "user"}) is None


async def test_no_status_message_means_no_progress_work(
    store: Store,
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await post(client, [action(1), action(2)])
    assert await progress_jobs(store) == []
    row = await store.fetch_one(
        "SELECT status_steps, status_step FROM agent_conversations WHERE conversation_id = :id",
        {"id": ID},
    )
    assert row is not None and row["status_steps"] == 0 and row["status_step"] is None


async def test_batches_are_coalesced_into_one_job_per_generation(
    store: Store,
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await arm(store)
    await post(client, [action(1), action(2, "ls")])
    await post(client, [action(3, "make")])
    jobs = await progress_jobs(store)
    assert len(jobs) == 1
    assert jobs[0]["job_key"] == f"progress:{ID}"
    assert jobs[0]["run_after"] <= jobs[0]["created_at"] + 0.001  # never edited: at once
    row = await store.fetch_one(
        "SELECT status_steps, status_step FROM agent_conversations WHERE conversation_id = :id",
        {"id": ID},
    )
    assert row is not None and (row["status_steps"], row["status_step"]) == (3, "terminal: make")
    # Once that job ran (the next generation), a later batch queues the next edit.
    await store.execute(
        "UPDATE agent_conversations SET status_generation = 1 WHERE conversation_id = :id",
        {"id": ID},
    )
    await post(client, [action(4)])
    assert len(await progress_jobs(store)) == 2


async def test_an_edit_waits_out_the_interval_since_the_last(
    store: Store,
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    from db.store import now

    edited = now()
    await arm(store, edited_at=edited)
    await post(client, [action(1)])
    (job,) = await progress_jobs(store)
    assert abs(job["run_after"] - (edited + 10)) < 0.5


async def test_events_without_steps_queue_nothing(
    store: Store,
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    await arm(store)
    await post(client, [{"id": "m1", "kind": "MessageEvent", "source": "agent"}])
    assert await progress_jobs(store) == []
