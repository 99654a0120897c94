"""/api/*, /healthz, /readyz and /metrics through the whole app, on both databases.

The app is built by create_app (run_worker=False) and driven over ASGI with its
lifespan running; POST /api/callbacks asks a fake agent-server served on loopback
(AGENT_SERVER_URL points at it, so no app code is replaced).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from agent.events import START_JOB, STATE_CHANGED_JOB
from db.agent_conversations import HeardState, lock_conversation
from db.callbacks import CallbackStatus, ConversationCallback, insert_callback
from db.migrations import current_version, migrate
from db.store import Store
from processors.runtime import CATCH_UP_JOB
from relay.api import _may_have_stopped
from relay.app import Relay, create_app
from relay.settings import Settings
from tests.support.fake_agent_api import AGENT_API_KEY, FakeAgentServer, LoopbackAgentServer
from tests.support.waiting import wait_for

API_TOKEN = "api-token-for-tests"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
HOOK_SECRET = "receiver-secret-123"
HOOK = {"kind": "webhook", "url": "https://receiver.example.test/hook", "secret": HOOK_SECRET}


@dataclass
class RunningApi:
    client: httpx.AsyncClient
    store: Store


@pytest.fixture
def agent_server() -> Iterator[FakeAgentServer]:
    fake = FakeAgentServer()
    yield fake


@pytest.fixture
def agent_url(agent_server: FakeAgentServer) -> Iterator[str]:
    with LoopbackAgentServer(agent_server) as server:
        yield server.url


@pytest.fixture
async def migrated_database_url(database_url: str) -> str:
    async with Store(database_url) as store:
        await migrate(store)
    return database_url


def settings_for(database_url: str, agent_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "agent_server_url": agent_url,
        "agent_server_api_key": AGENT_API_KEY,
        "api_token": API_TOKEN,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[RunningApi]:
    app: Starlette = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        relay: Relay = app.state.relay
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://relay.test"
        ) as client:
            yield RunningApi(client, relay.store)


@pytest.fixture
async def api(migrated_database_url: str, agent_url: str) -> AsyncIterator[RunningApi]:
    async with running(settings_for(migrated_database_url, agent_url)) as ready:
        yield ready


async def rows(store: Store, table: str) -> list[dict[str, Any]]:
    return await store.fetch_all(f"SELECT * FROM {table} ORDER BY 1")


async def assert_nothing_stored(store: Store) -> None:
    assert await rows(store, "conversation_callbacks") == []
    assert await rows(store, "jobs") == []


# -- authorisation -----------------------------------------------------------------------

API_CALLS = [
    ("POST", "/api/conversations", {"prompt": "hi", "callback": HOOK}),
    ("POST", "/api/callbacks", {"conversation_id": uuid.uuid4().hex, "processor": HOOK}),
    ("GET", "/api/callbacks/1", None),
    ("GET", "/api/callbacks", None),
]


async def test_without_api_token_every_api_route_is_401(
    migrated_database_url: str, agent_url: str
) -> None:
    settings = settings_for(migrated_database_url, agent_url, api_token=None)
    async with running(settings) as api:
        for method, path, body in API_CALLS:
            for headers in ({}, AUTH, {"Authorization": "Bearer "}):
                response = await api.client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers)
        await assert_nothing_stored(api.store)


WRONG_CREDENTIALS = [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": API_TOKEN},
    {"Authorization": f"Basic {API_TOKEN}"},
    {"X-Session-API-Key": API_TOKEN},
]


async def test_wrong_or_missing_token_is_401(api: RunningApi) -> None:
    for method, path, body in API_CALLS:
        for headers in WRONG_CREDENTIALS:
            response = await api.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers)
    await assert_nothing_stored(api.store)


# -- POST /api/conversations ---------------------------------------------------------------


async def test_start_conversation_stores_a_callback_and_a_start_job(api: RunningApi) -> None:
    response = await api.client.post(
        "/api/conversations",
        json={"prompt": "Fix the flaky test", "repository": "acme/widgets", "callback": HOOK},
        headers=AUTH,
    )
    assert response.status_code == 201
    answer = response.json()
    assert set(answer) == {"conversation_id", "callback_id"}
    conversation_id = answer["conversation_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", conversation_id)

    [callback] = await rows(api.store, "conversation_callbacks")
    assert callback["id"] == answer["callback_id"]
    assert callback["conversation_id"] == conversation_id
    assert callback["status"] == "ACTIVE"
    assert callback["processor_type"] == "webhook"
    [job] = await rows(api.store, "jobs")
    assert job["kind"] == START_JOB.name
    assert job["job_key"] == conversation_id
    payload = json.loads(job["payload"])
    assert payload["conversation_id"] == conversation_id
    assert "Fix the flaky test" in payload["prompt"]
    assert "acme/widgets" in payload["prompt"]
    assert payload["tags"] == {"source": "api", "repository": "acme/widgets"}


async def test_each_start_gets_its_own_conversation(api: RunningApi) -> None:
    body = {"prompt": "Do it", "callback": HOOK}
    first = (await api.client.post("/api/conversations", json=body, headers=AUTH)).json()
    second = (await api.client.post("/api/conversations", json=body, headers=AUTH)).json()
    assert first["conversation_id"] != second["conversation_id"]
    assert first["callback_id"] != second["callback_id"]
    assert len(await rows(api.store, "jobs")) == 2


BAD_START_BODIES: list[tuple[bytes, int]] = [
    (b"not json", 400),
    (b"", 400),
    (b"[]", 422),
    (json.dumps({"callback": HOOK}).encode(), 422),
    (json.dumps({"prompt": "", "callback": HOOK}).encode(), 422),
    (json.dumps({"prompt": "hi"}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": {**HOOK, "kind": "carrier-pigeon"}}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": {**HOOK, "url": "ftp://x.test/h"}}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": {**HOOK, "url": "not a url"}}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": {**HOOK, "secret": "short"}}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": {**HOOK, "extra": 1}}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": HOOK, "extra": True}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": HOOK, "repository": "no-slash"}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": HOOK, "repository": "a/b/c"}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": HOOK, "repository": "../etc"}).encode(), 422),
    (json.dumps({"prompt": "hi", "callback": HOOK, "repository": "acme/.."}).encode(), 422),
]


async def test_bad_start_bodies_store_nothing(api: RunningApi) -> None:
    for content, status in BAD_START_BODIES:
        response = await api.client.post(
            "/api/conversations",
            content=content,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == status, (content, response.text)
        assert "error" in response.json()
        assert HOOK_SECRET not in response.text
    await assert_nothing_stored(api.store)


# -- GET /api/callbacks/{id} ---------------------------------------------------------------


async def test_show_callback_gives_its_public_view_only(api: RunningApi) -> None:
    started = (
        await api.client.post(
            "/api/conversations", json={"prompt": "hi", "callback": HOOK}, headers=AUTH
        )
    ).json()
    response = await api.client.get(f"/api/callbacks/{started['callback_id']}", headers=AUTH)
    assert response.status_code == 200
    view = response.json()
    assert {"id", "conversation_id", "status", "processor_type", "created_at", "updated_at"} <= set(
        view
    )
    assert view["id"] == started["callback_id"]
    assert view["conversation_id"] == started["conversation_id"]
    assert view["status"] == "ACTIVE"
    assert view["processor_type"] == "webhook"
    assert HOOK_SECRET not in response.text
    assert "processor_json" not in view


async def test_unknown_callback_is_404(api: RunningApi) -> None:
    for callback_id in ("999999", "0"):
        response = await api.client.get(f"/api/callbacks/{callback_id}", headers=AUTH)
        assert response.status_code == 404


# -- POST /api/callbacks ------------------------------------------------------------------


async def test_callback_on_unknown_conversation_is_404(
    api: RunningApi, agent_server: FakeAgentServer
) -> None:
    unknown = uuid.uuid4().hex
    response = await api.client.post(
        "/api/callbacks", json={"conversation_id": unknown, "processor": HOOK}, headers=AUTH
    )
    assert response.status_code == 404
    [lookup] = agent_server.calls_to("GET", f"/api/conversations/{unknown}")
    assert lookup.headers["x-session-api-key"] == AGENT_API_KEY
    await assert_nothing_stored(api.store)


async def test_a_conversation_the_agent_has_shown_us_is_not_looked_up_again(
    api: RunningApi, agent_server: FakeAgentServer
) -> None:
    """The agent-server's webhooks announced it: registering needs no round trip."""
    conversation_id = agent_server.add_conversation(execution_status="running")
    await api.store.execute(
        "INSERT INTO agent_conversations (conversation_id, updated_at) VALUES (:id, 0)",
        {"id": conversation_id},
    )
    for _ in range(2):
        response = await api.client.post(
            "/api/callbacks",
            json={"conversation_id": conversation_id, "processor": HOOK},
            headers=AUTH,
        )
        assert response.status_code == 201
    assert agent_server.calls_to("GET", f"/api/conversations/{conversation_id}") == []


@pytest.mark.parametrize("execution_status", ["finished", "error", "paused", "stuck", "novel"])
async def test_callback_on_a_stopped_conversation_queues_a_catch_up_behind_it(
    api: RunningApi, agent_server: FakeAgentServer, execution_status: str
) -> None:
    """No state change may ever come (a status it does not know counts as stopped):
    the catch-up job looks at the agent when it runs."""
    conversation_id = agent_server.add_conversation(execution_status=execution_status)
    response = await api.client.post(
        "/api/callbacks",
        json={"conversation_id": str(uuid.UUID(conversation_id)), "processor": HOOK},
        headers=AUTH,
    )
    assert response.status_code == 201
    callback_id = response.json()["callback_id"]
    [callback] = await rows(api.store, "conversation_callbacks")
    assert callback["id"] == callback_id
    assert callback["conversation_id"] == conversation_id
    assert callback["status"] == "ACTIVE"
    [job] = await rows(api.store, "jobs")
    assert job["kind"] == CATCH_UP_JOB.name
    assert job["job_key"] == conversation_id
    assert json.loads(job["payload"]) == {"callback_id": callback_id}


@pytest.mark.parametrize("execution_status", ["running", "idle"])
async def test_callback_on_a_running_conversation_waits_for_its_stop_without_asking_again(
    api: RunningApi, agent_server: FakeAgentServer, execution_status: str
) -> None:
    """The agent-server has just said it is running: its stop comes as a webhook
    recorded after the callback exists, and the job of that stop runs the callback."""
    conversation_id = agent_server.add_conversation(execution_status=execution_status)
    response = await api.client.post(
        "/api/callbacks", json={"conversation_id": conversation_id, "processor": HOOK}, headers=AUTH
    )
    assert response.status_code == 201
    assert await rows(api.store, "jobs") == []
    assert len(agent_server.calls_to("GET", f"/api/conversations/{conversation_id}")) == 1

    stop = {"observation": "agent_state_changed", "extras": {"agent_state": "finished"}, "id": 1}
    answer = await api.client.post(
        f"/agent/events/{conversation_id}", json=stop, headers={"X-Session-API-Key": AGENT_API_KEY}
    )
    assert answer.status_code == 200
    [job] = await rows(api.store, "jobs")
    assert job["kind"] == STATE_CHANGED_JOB.name
    assert job["job_key"] == conversation_id


async def test_callback_on_a_conversation_known_from_webhooks_queues_a_catch_up(
    api: RunningApi, agent_server: FakeAgentServer
) -> None:
    """The relay did not ask the agent, and its record may be behind a lost webhook:
    the catch-up job asks."""
    conversation_id = agent_server.add_conversation(execution_status="running")
    await api.store.execute(
        "INSERT INTO agent_conversations (conversation_id, execution_status, updated_at)"
        " VALUES (:id, 'running', 0)",
        {"id": conversation_id},
    )
    response = await api.client.post(
        "/api/callbacks", json={"conversation_id": conversation_id, "processor": HOOK}, headers=AUTH
    )
    assert response.status_code == 201
    [job] = await rows(api.store, "jobs")
    assert job["kind"] == CATCH_UP_JOB.name


async def test_a_stop_recorded_while_a_callback_registers_is_not_missed(
    api: RunningApi, agent_server: FakeAgentServer, migrated_database_url: str
) -> None:
    """The agent-server says running; meanwhile a batch with the stop is being
    recorded (its transaction holds the conversation's row). The registration waits
    for it, sees the stop, and queues the catch-up job."""
    conversation_id = agent_server.add_conversation(execution_status="running")
    batch_holds_the_row = asyncio.Event()
    registration_asked = asyncio.Event()

    async def record_the_stop(store: Store) -> None:
        async with store.transaction():
            await lock_conversation(store, conversation_id)
            batch_holds_the_row.set()
            await registration_asked.wait()
            await store.execute(
                "UPDATE agent_conversations SET execution_status = 'finished',"
                " last_agent_event_kind = 'finish' WHERE conversation_id = :id",
                {"id": conversation_id},
            )

    async with Store(migrated_database_url) as intake_store:
        recording = asyncio.create_task(record_the_stop(intake_store))
        await batch_holds_the_row.wait()
        registering = asyncio.create_task(
            api.client.post(
                "/api/callbacks",
                json={"conversation_id": conversation_id, "processor": HOOK},
                headers=AUTH,
            )
        )
        lookup = f"/api/conversations/{conversation_id}"
        await wait_for(lambda: agent_server.calls_to("GET", lookup), message="no lookup")
        registration_asked.set()
        await recording
        response = await registering
    assert response.status_code == 201
    [job] = await rows(api.store, "jobs")
    assert job["kind"] == CATCH_UP_JOB.name


@pytest.mark.parametrize(
    ("told", "heard", "needs_catch_up"),
    [
        ("running", HeardState(None, None), False),
        ("running", HeardState("running", "action"), False),
        # A batch recorded between the lookup and the registration said it stopped.
        ("running", HeardState("finished", "finish"), True),
        ("running", HeardState("finished", "message"), True),
        ("finished", HeardState(None, None), True),
        (None, HeardState("running", None), True),
    ],
)
def test_whether_a_new_callback_needs_the_catch_up(
    told: str | None, heard: HeardState, needs_catch_up: bool
) -> None:
    assert _may_have_stopped(told, heard) is needs_catch_up


BAD_CALLBACK_BODIES: list[dict[str, Any]] = [
    {"conversation_id": "junk", "processor": HOOK},
    {"conversation_id": uuid.uuid4().hex, "processor": {**HOOK, "url": "gopher://x"}},
    {"conversation_id": uuid.uuid4().hex, "processor": {**HOOK, "kind": "email"}},
    {"conversation_id": uuid.uuid4().hex, "processor": {**HOOK, "secret": "short"}},
    {"conversation_id": uuid.uuid4().hex},
    {"conversation_id": uuid.uuid4().hex, "processor": HOOK, "extra": 1},
]


async def test_bad_callback_bodies_are_422_and_do_not_reach_the_agent(
    api: RunningApi, agent_server: FakeAgentServer
) -> None:
    for body in BAD_CALLBACK_BODIES:
        response = await api.client.post("/api/callbacks", json=body, headers=AUTH)
        assert response.status_code == 422, body
    not_json = await api.client.post(
        "/api/callbacks", content=b"{", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert agent_server.calls == []
    await assert_nothing_stored(api.store)


async def test_callback_while_the_agent_is_down_is_503(
    api: RunningApi, agent_server: FakeAgentServer
) -> None:
    conversation_id = agent_server.add_conversation()
    agent_server.fail_next("GET", f"/api/conversations/{conversation_id}", 502)
    response = await api.client.post(
        "/api/callbacks", json={"conversation_id": conversation_id, "processor": HOOK}, headers=AUTH
    )
    assert response.status_code == 503
    assert response.headers["retry-after"]
    await assert_nothing_stored(api.store)


# -- receiver addresses (WEBHOOK_ALLOW_PRIVATE_NETWORKS) -----------------------------------

PRIVATE_RECEIVERS = [
    "http://127.0.0.1:9000/hook",
    "http://localhost:9000/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/hook",
    "http://2130706433/hook",
]


async def test_a_receiver_on_a_private_address_is_refused_at_creation(
    api: RunningApi, agent_server: FakeAgentServer
) -> None:
    conversation_id = agent_server.add_conversation()
    for url in PRIVATE_RECEIVERS:
        hook = {**HOOK, "url": url}
        started = await api.client.post(
            "/api/conversations", json={"prompt": "hi", "callback": hook}, headers=AUTH
        )
        registered = await api.client.post(
            "/api/callbacks",
            json={"conversation_id": conversation_id, "processor": hook},
            headers=AUTH,
        )
        for response, field in ((started, "callback.url"), (registered, "processor.url")):
            assert response.status_code == 422, (url, response.text)
            error = response.json()["error"]
            assert error.startswith(f"{field}: "), error
            assert "not a public address" in error
            assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS=true" in error
            assert HOOK_SECRET not in response.text
    # Refused before the agent-server was asked about the conversation.
    assert agent_server.calls_to("GET", f"/api/conversations/{conversation_id}") == []
    await assert_nothing_stored(api.store)


async def test_private_receivers_are_accepted_when_the_setting_allows_them(
    migrated_database_url: str, agent_url: str, agent_server: FakeAgentServer
) -> None:
    conversation_id = agent_server.add_conversation()
    hook = {**HOOK, "url": "http://127.0.0.1:9000/hook"}
    settings = settings_for(migrated_database_url, agent_url, webhook_allow_private_networks=True)
    async with running(settings) as api:
        started = await api.client.post(
            "/api/conversations", json={"prompt": "hi", "callback": hook}, headers=AUTH
        )
        registered = await api.client.post(
            "/api/callbacks",
            json={"conversation_id": conversation_id, "processor": hook},
            headers=AUTH,
        )
    assert started.status_code == 201, started.text
    assert registered.status_code == 201, registered.text


# -- GET /api/callbacks --------------------------------------------------------------------

CONVERSATION_A = uuid.uuid4().hex
CONVERSATION_B = uuid.uuid4().hex

# Inserted in this order, so ids rise down the list.
LISTED_ROWS: list[tuple[str, str, CallbackStatus]] = [
    (CONVERSATION_A, "webhook", CallbackStatus.ACTIVE),
    (CONVERSATION_A, "webhook", CallbackStatus.COMPLETED),
    (CONVERSATION_B, "webhook", CallbackStatus.ERROR),
    (CONVERSATION_B, "slack", CallbackStatus.ACTIVE),
    (CONVERSATION_A, "slack", CallbackStatus.ACTIVE),
]


async def insert_listed_rows(store: Store) -> list[ConversationCallback]:
    # Rows are written directly: listing never loads a processor, so the kind need not
    # be registered, and every row carries the secret that must not come out.
    inserted = []
    for conversation_id, processor_type, status in LISTED_ROWS:
        stamp = 1_700_000_000.0
        callback = ConversationCallback(
            conversation_id=conversation_id,
            status=status,
            processor_type=processor_type,
            processor_json=json.dumps({"url": HOOK["url"], "secret": HOOK_SECRET}),
            created_at=stamp,
            updated_at=stamp,
        )
        inserted.append(await insert_callback(store, callback))
    return inserted


async def listed(api: RunningApi, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/api/callbacks", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    assert HOOK_SECRET not in response.text
    assert "processor_json" not in response.text
    answer: dict[str, Any] = response.json()
    return answer


def ids_of(answer: dict[str, Any]) -> list[int]:
    return [view["id"] for view in answer["callbacks"]]


async def test_list_callbacks_gives_public_views_newest_first(api: RunningApi) -> None:
    inserted = await insert_listed_rows(api.store)
    answer = await listed(api)
    assert ids_of(answer) == [callback.id for callback in reversed(inserted)]
    assert answer["next_before"] is None
    assert answer["callbacks"][0] == inserted[-1].public_view()


async def test_each_filter_narrows_the_list(api: RunningApi) -> None:
    inserted = await insert_listed_rows(api.store)

    def expected(
        conversation_id: str | None, processor_type: str | None, status: str | None
    ) -> list[int | None]:
        return [
            callback.id
            for callback in reversed(inserted)
            if conversation_id in (None, callback.conversation_id)
            and processor_type in (None, callback.processor_type)
            and status in (None, callback.status.value)
        ]

    dashed_a = str(uuid.UUID(CONVERSATION_A))
    cases: list[tuple[dict[str, Any], list[int | None]]] = [
        ({"conversation_id": CONVERSATION_A}, expected(CONVERSATION_A, None, None)),
        ({"conversation_id": dashed_a}, expected(CONVERSATION_A, None, None)),
        ({"conversation_id": CONVERSATION_B}, expected(CONVERSATION_B, None, None)),
        ({"status": "active"}, expected(None, None, "ACTIVE")),
        ({"status": "Completed"}, expected(None, None, "COMPLETED")),
        ({"status": "ERROR"}, expected(None, None, "ERROR")),
        ({"processor_type": "slack"}, expected(None, "slack", None)),
        (
            {"conversation_id": CONVERSATION_A, "status": "active", "processor_type": "webhook"},
            expected(CONVERSATION_A, "webhook", "ACTIVE"),
        ),
        ({"processor_type": "carrier-pigeon"}, []),
        ({"conversation_id": uuid.uuid4().hex}, []),
    ]
    for params, ids in cases:
        answer = await listed(api, **params)
        assert ids_of(answer) == ids, params
        assert 0 < len(ids) < len(inserted) or ids == [], params


async def walk(api: RunningApi, **params: Any) -> list[list[int]]:
    pages: list[list[int]] = []
    before: int | None = None
    while True:
        answer = await listed(api, **params, **({} if before is None else {"before": before}))
        pages.append(ids_of(answer))
        before = answer["next_before"]
        if before is None:
            return pages
        assert before == pages[-1][-1]
        assert len(pages) <= len(LISTED_ROWS), "paging does not end"


async def test_paging_walks_every_row_exactly_once(api: RunningApi) -> None:
    inserted = await insert_listed_rows(api.store)
    newest_first = [callback.id for callback in reversed(inserted)]

    pages = await walk(api, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [callback_id for page in pages for callback_id in page] == newest_first

    active = await walk(api, limit=2, status="active")
    assert active == [newest_first[:2], [inserted[0].id]]

    # A page that ends exactly at the last row still points on; the next one is empty.
    assert await walk(api, limit=len(inserted)) == [newest_first, []]


BAD_LIST_QUERIES: list[dict[str, str]] = [
    {"status": "done"},
    {"status": ""},
    {"limit": "0"},
    {"limit": "201"},
    {"limit": "ten"},
    {"conversation_id": "junk"},
    {"conversation_id": ""},
    {"before": "latest"},
    {"before": "0"},
    {"statuss": "active"},
]


async def test_bad_list_queries_are_422(api: RunningApi) -> None:
    await insert_listed_rows(api.store)
    for params in BAD_LIST_QUERIES:
        response = await api.client.get("/api/callbacks", params=params, headers=AUTH)
        assert response.status_code == 422, (params, response.text)
        assert "error" in response.json()
    assert (await api.client.get("/api/callbacks", params={"limit": 200}, headers=AUTH)).is_success


async def test_callbacks_route_serves_get_and_post_and_refuses_other_methods(
    api: RunningApi, agent_server: FakeAgentServer
) -> None:
    conversation_id = agent_server.add_conversation()
    posted = await api.client.post(
        "/api/callbacks", json={"conversation_id": conversation_id, "processor": HOOK}, headers=AUTH
    )
    assert posted.status_code == 201
    assert ids_of(await listed(api)) == [posted.json()["callback_id"]]
    # Starlette adds HEAD to GET routes: it must list, not try to register.
    assert (await api.client.head("/api/callbacks", headers=AUTH)).status_code == 200
    for method in ("PUT", "DELETE", "PATCH"):
        response = await api.client.request(method, "/api/callbacks", headers=AUTH)
        assert response.status_code == 405, method
        assert {"GET", "POST"} <= set(response.headers["allow"].replace(" ", "").split(","))


# -- operator routes ---------------------------------------------------------------------


async def test_healthz_and_readyz(api: RunningApi) -> None:
    health = await api.client.get("/healthz")
    ready = await api.client.get("/readyz")
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_metrics_count_jobs_and_callbacks(api: RunningApi) -> None:
    await api.client.post(
        "/api/conversations", json={"prompt": "hi", "callback": HOOK}, headers=AUTH
    )
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "agent_relay_jobs" in text
    assert 'agent_relay_jobs{status="queued"} 1.0' in text
    assert 'agent_relay_callbacks{status="ACTIVE"} 1.0' in text


async def test_readyz_is_503_on_an_unmigrated_postgresql_database(
    postgres_url: str, agent_url: str
) -> None:
    async with Store(postgres_url) as store:
        await store.execute("DROP SCHEMA public CASCADE")
        await store.execute("CREATE SCHEMA public")
    async with running(settings_for(postgres_url, agent_url)) as api:
        ready = await api.client.get("/readyz")
        health = await api.client.get("/healthz")
    assert ready.status_code == 503
    assert "migrate" in ready.json()["status"]
    assert health.status_code == 200
    async with Store(postgres_url) as store:
        # The probe only reads: it did not create the version table.
        assert await current_version(store) == 0
        assert (
            await store.fetch_one(
                "SELECT 1 AS found WHERE to_regclass('schema_migrations') IS NOT NULL"
            )
            is None
        )
