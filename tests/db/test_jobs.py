"""JobQueue on real SQLite and real PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from db.deliveries import record_delivery
from db.job_kinds import (
    Job,
    JobKind,
    JobStatus,
    PermanentJobError,
    VerbatimJson,
    encode_payload,
    json_object,
)
from db.jobs import JobQueue, backoff_delay
from db.migrations import migrate
from db.store import Store, now
from tests.support.job_kinds import AnyPayload, kind_named
from tests.support.waiting import wait_for

NOTIFY = kind_named("notify")

SHORT_LEASE_SECONDS = 0.2


@pytest.fixture
def queue(store: Store) -> JobQueue:
    return JobQueue(store)


async def claim_one(queue: JobQueue) -> Job:
    job = await queue.claim()
    assert job is not None, "expected a claimable job"
    return job


async def make_due(store: Store, job_id: int) -> None:
    """Skip a job's retry delay, as if its backoff had passed."""
    await store.execute(
        "UPDATE jobs SET run_after = :now WHERE id = :id", {"now": now(), "id": job_id}
    )


async def fetch(queue: JobQueue, job_id: int) -> Job:
    job = await queue.get(job_id)
    assert job is not None, f"job {job_id} does not exist"
    return job


async def total_jobs(queue: JobQueue) -> int:
    return sum((await queue.counts()).values())


# --- enqueue -----------------------------------------------------------------------------


async def test_enqueue_returns_an_id_and_stores_a_queued_job(queue: JobQueue) -> None:
    before = now()
    job_id = await queue.enqueue(NOTIFY, AnyPayload(text="hello", n=1), key="conv-1")

    assert isinstance(job_id, int)
    job = await fetch(queue, job_id)
    assert job.kind == "notify"
    assert job.payload == {"text": "hello", "n": 1}
    assert job.job_key == "conv-1"
    assert job.status is JobStatus.QUEUED
    assert job.attempts == 0
    assert job.max_attempts == queue.max_attempts
    assert job.lease_token is None and job.lease_until is None
    assert job.last_error is None
    assert before <= job.run_after <= now()


async def test_enqueue_with_a_seen_idempotency_key_returns_none_and_adds_no_row(
    queue: JobQueue,
) -> None:
    first = await queue.enqueue(NOTIFY, AnyPayload(n=1), idempotency_key="delivery-42")
    duplicate = await queue.enqueue(NOTIFY, AnyPayload(n=2), idempotency_key="delivery-42")

    assert first is not None
    assert duplicate is None
    assert await total_jobs(queue) == 1
    assert (await fetch(queue, first)).payload == {"n": 1}


async def test_jobs_without_idempotency_key_never_collide(queue: JobQueue) -> None:
    ids = [await queue.enqueue(NOTIFY, AnyPayload()) for _ in range(3)]

    assert None not in ids
    assert len(set(ids)) == 3


async def test_enqueue_with_delay_is_not_claimable_before_its_time(queue: JobQueue) -> None:
    await queue.enqueue(NOTIFY, AnyPayload(), delay=60)

    assert await queue.claim() is None


async def test_enqueue_in_a_committed_transaction_keeps_the_job(store: Store) -> None:
    queue = JobQueue(store)
    async with store.transaction():
        job_id = await queue.enqueue(NOTIFY, AnyPayload())

    assert job_id is not None
    assert await queue.get(job_id) is not None


async def test_enqueue_in_a_transaction_that_raises_leaves_no_job(store: Store) -> None:
    queue = JobQueue(store)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction():
            assert await record_delivery(store, "github", "delivery-1")
            job_id = await queue.enqueue(NOTIFY, AnyPayload(), idempotency_key="delivery-1")
            assert job_id is not None
            raise Boom

    assert await total_jobs(queue) == 0
    assert job_id is not None and await queue.get(job_id) is None
    # The delivery written in the same transaction is gone too, so a re-delivery is accepted.
    assert await record_delivery(store, "github", "delivery-1")


# --- claim and leases --------------------------------------------------------------------


async def test_claim_leases_the_job_and_a_second_claim_gets_nothing(queue: JobQueue) -> None:
    job_id = await queue.enqueue(NOTIFY, AnyPayload(n=1))

    before = now()
    job = await claim_one(queue)

    assert job.id == job_id
    assert job.status is JobStatus.RUNNING
    assert job.attempts == 1
    assert job.lease_token
    assert job.lease_until is not None and job.lease_until > before
    assert job.lease_until >= before + queue.lease_seconds - 1
    assert await queue.claim() is None
    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.RUNNING
    assert stored.lease_token == job.lease_token


async def test_claim_on_an_empty_queue_returns_none(queue: JobQueue) -> None:
    assert await queue.claim() is None


async def test_claim_takes_jobs_in_enqueue_order(queue: JobQueue) -> None:
    ids = [await queue.enqueue(NOTIFY, AnyPayload(n=n)) for n in range(3)]

    claimed = [(await claim_one(queue)).id for _ in ids]

    assert claimed == ids


async def test_complete_marks_the_job_done_and_releases_the_lease(queue: JobQueue) -> None:
    await queue.enqueue(NOTIFY, AnyPayload())
    job = await claim_one(queue)

    assert await queue.complete(job)

    stored = await fetch(queue, job.id)
    assert stored.status is JobStatus.DONE
    assert stored.lease_token is None and stored.lease_until is None
    assert await queue.claim() is None


async def test_jobs_sharing_a_key_run_one_at_a_time_in_enqueue_order(queue: JobQueue) -> None:
    first_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    second_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    other_key = await queue.enqueue(NOTIFY, AnyPayload(), key="L")
    keyless = await queue.enqueue(NOTIFY, AnyPayload())

    first = await claim_one(queue)
    assert first.id == first_of_k
    # K's second job waits while the first runs; other keys and keyless jobs do not.
    assert (await claim_one(queue)).id == other_key
    assert (await claim_one(queue)).id == keyless
    assert await queue.claim() is None

    assert await queue.complete(first)
    assert (await claim_one(queue)).id == second_of_k


async def test_claim_batch_takes_one_job_per_key_in_claim_order(queue: JobQueue) -> None:
    first_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    second_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    other_key = await queue.enqueue(NOTIFY, AnyPayload(), key="L")
    keyless = [await queue.enqueue(NOTIFY, AnyPayload()) for _ in range(3)]

    batch = await queue.claim_batch(10)

    assert [job.id for job in batch] == [first_of_k, other_key, *keyless]
    assert all(job.status is JobStatus.RUNNING and job.attempts == 1 for job in batch)
    assert await queue.claim_batch(10) == []
    assert await queue.complete(batch[0])
    assert [job.id for job in await queue.claim_batch(10)] == [second_of_k]


async def test_claim_batch_takes_no_more_than_its_limit(queue: JobQueue) -> None:
    ids = [await queue.enqueue(NOTIFY, AnyPayload()) for _ in range(5)]

    first = await queue.claim_batch(2)
    rest = await queue.claim_batch(10)

    assert [job.id for job in first] == ids[:2]
    assert [job.id for job in rest] == ids[2:]


async def test_complete_and_claim_records_the_finished_and_takes_their_keys_next_jobs(
    queue: JobQueue,
) -> None:
    first_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    second_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    other = await queue.enqueue(NOTIFY, AnyPayload())
    finished, lost = await queue.claim_batch(2)
    assert [finished.id, lost.id] == [first_of_k, other]
    # `lost` was taken over by another worker: its lease token is no longer ours.
    await queue.store.execute(
        "UPDATE jobs SET lease_token = 'someone-else' WHERE id = :id", {"id": lost.id}
    )

    done, claimed = await queue.complete_and_claim([finished, lost], 5)

    assert done == {first_of_k}
    assert [job.id for job in claimed] == [second_of_k]
    assert (await fetch(queue, first_of_k)).status is JobStatus.DONE
    assert (await fetch(queue, other)).status is JobStatus.RUNNING


async def test_concurrent_batch_claims_never_share_a_job_or_a_key(store: Store) -> None:
    queue = JobQueue(store)
    for n in range(40):
        await queue.enqueue(NOTIFY, AnyPayload(n=n), key=f"key-{n % 8}")

    batches = await asyncio.gather(*(JobQueue(store).claim_batch(6) for _ in range(4)))

    claimed = [job for batch in batches for job in batch]
    assert len({job.id for job in claimed}) == len(claimed)
    assert len({job.job_key for job in claimed}) == len(claimed)


async def test_a_keyed_job_waits_while_an_earlier_job_of_its_key_is_queued(
    queue: JobQueue,
) -> None:
    # The first job is queued but not yet due; the second is due, and must still wait.
    first_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K", delay=60)
    second_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    other_key = await queue.enqueue(NOTIFY, AnyPayload(), key="L")

    assert (await claim_one(queue)).id == other_key
    assert await queue.claim() is None

    assert first_of_k is not None and second_of_k is not None
    await make_due(queue.store, first_of_k)
    first = await claim_one(queue)
    assert first.id == first_of_k
    assert await queue.claim() is None
    assert await queue.complete(first)
    assert (await claim_one(queue)).id == second_of_k


async def test_a_keyed_job_waits_while_an_earlier_job_of_its_key_awaits_its_retry(
    queue: JobQueue,
) -> None:
    await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    second_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    first = await claim_one(queue)

    assert await queue.fail(first, "rate limited", retry_after=60) is JobStatus.QUEUED

    assert await queue.claim() is None
    await make_due(queue.store, first.id)
    retried = await claim_one(queue)
    assert retried.id == first.id and retried.attempts == 2
    assert await queue.complete(retried)
    assert (await claim_one(queue)).id == second_of_k


async def test_a_failed_job_does_not_block_the_later_jobs_of_its_key(queue: JobQueue) -> None:
    await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    second_of_k = await queue.enqueue(NOTIFY, AnyPayload(), key="K")
    first = await claim_one(queue)

    assert await queue.fail(first, "broken", permanent=True) is JobStatus.FAILED

    assert (await claim_one(queue)).id == second_of_k


async def test_a_retried_job_waits_while_a_later_job_of_its_key_runs(queue: JobQueue) -> None:
    first = await queue.enqueue(NOTIFY, AnyPayload(), key="conversation-1")
    second = await queue.enqueue(NOTIFY, AnyPayload(), key="conversation-1")
    await queue.fail(await claim_one(queue), "boom", permanent=True)
    running = await claim_one(queue)
    assert running.id == second

    assert first is not None and await queue.retry(first)  # `agent-relay jobs retry`

    assert await queue.claim() is None
    await queue.complete(running)
    assert (await claim_one(queue)).id == first


async def test_a_job_committed_after_a_later_one_of_its_key_waits_for_it(
    empty_postgres_url: str,
) -> None:
    """PostgreSQL ids follow the sequence, not commit order: a job with the smaller id
    can appear while the larger one already runs, and must not run beside it."""
    async with Store(empty_postgres_url) as store:
        await migrate(store)
        queue = JobQueue(store)
        inserted, release = asyncio.Event(), asyncio.Event()

        async def slow_transaction() -> None:
            async with store.transaction():
                await queue.enqueue(NOTIFY, AnyPayload(), key="conversation-1")
                inserted.set()
                await release.wait()

        slow = asyncio.create_task(slow_transaction())
        await inserted.wait()
        async with store.transaction():
            later = await queue.enqueue(NOTIFY, AnyPayload(), key="conversation-1")
        running = await claim_one(queue)
        assert running.id == later
        release.set()
        await slow

        assert await queue.claim() is None
        await queue.complete(running)
        assert (await claim_one(queue)).id < later


async def test_a_job_whose_lease_expired_is_claimable_again(store: Store) -> None:
    queue = JobQueue(store, lease_seconds=SHORT_LEASE_SECONDS)
    job_id = await queue.enqueue(NOTIFY, AnyPayload())
    first_lease = await claim_one(queue)
    assert await queue.claim() is None

    second_lease = await wait_for(
        queue.claim, timeout=5, message="the expired lease was never taken over"
    )

    assert second_lease.id == job_id
    assert second_lease.status is JobStatus.RUNNING
    assert second_lease.attempts == 2
    assert second_lease.lease_token != first_lease.lease_token


async def test_the_old_holder_changes_nothing_after_losing_its_lease(store: Store) -> None:
    queue = JobQueue(store, lease_seconds=SHORT_LEASE_SECONDS)
    await queue.enqueue(NOTIFY, AnyPayload())
    old_holder = await claim_one(queue)
    new_holder = await wait_for(queue.claim, timeout=5, message="the lease never expired")
    taken_over = await fetch(queue, new_holder.id)

    assert not await queue.complete(old_holder)
    assert await queue.fail(old_holder, "late failure", permanent=True) is None
    assert await queue.fail(old_holder, "late failure", retry_after=0) is None
    assert not await queue.extend_lease(old_holder)

    assert await fetch(queue, new_holder.id) == taken_over
    assert await queue.complete(new_holder)
    finished = await fetch(queue, new_holder.id)
    assert finished.status is JobStatus.DONE
    assert finished.last_error is None


async def test_extend_lease_pushes_lease_until_forward(store: Store) -> None:
    queue = JobQueue(store, lease_seconds=30)
    await queue.enqueue(NOTIFY, AnyPayload())
    job = await claim_one(queue)
    await store.execute(
        "UPDATE jobs SET lease_until = :soon WHERE id = :id", {"soon": now() + 1, "id": job.id}
    )

    assert await queue.extend_lease(job)

    lease_until = (await fetch(queue, job.id)).lease_until
    assert lease_until is not None and lease_until > now() + 20


# --- failures and retries ----------------------------------------------------------------


async def test_fail_with_retry_after_requeues_after_that_delay(queue: JobQueue) -> None:
    await queue.enqueue(NOTIFY, AnyPayload())
    job = await claim_one(queue)

    before = now()
    status = await queue.fail(job, "429 Too Many Requests", retry_after=42)
    after = now()

    assert status is JobStatus.QUEUED
    stored = await fetch(queue, job.id)
    assert stored.status is JobStatus.QUEUED
    assert before + 42 <= stored.run_after <= after + 42
    assert stored.last_error == "429 Too Many Requests"
    assert stored.lease_token is None and stored.lease_until is None
    assert stored.attempts == 1
    assert await queue.claim() is None


async def test_fail_without_retry_after_backs_off_exponentially_within_bounds(
    store: Store,
) -> None:
    queue = JobQueue(store, backoff_base=10, backoff_cap=40, max_attempts=10)
    job_id = await queue.enqueue(NOTIFY, AnyPayload())
    assert job_id is not None
    expected_ceilings = [10, 20, 40, 40, 40]

    for attempt, ceiling in enumerate(expected_ceilings, start=1):
        job = await claim_one(queue)
        assert job.attempts == attempt
        before = now()
        assert await queue.fail(job, f"attempt {attempt} failed") is JobStatus.QUEUED
        after = now()
        run_after = (await fetch(queue, job_id)).run_after
        assert before + ceiling / 2 <= run_after <= after + ceiling, (attempt, run_after - before)
        await make_due(store, job_id)


@pytest.mark.parametrize(
    ("attempts", "ceiling"), [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 64.0), (7, 100.0)]
)
def test_backoff_delay_stays_between_half_and_all_of_its_ceiling(
    attempts: int, ceiling: float
) -> None:
    delays = [backoff_delay(attempts, base=2.0, cap=100.0) for _ in range(200)]

    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 1, "no jitter"


def test_backoff_delay_grows_with_attempts_until_the_cap() -> None:
    samples = {
        attempts: [backoff_delay(attempts, base=1.0, cap=1000.0) for _ in range(100)]
        for attempts in range(1, 9)
    }

    # Each ceiling doubles, so every delay of attempt n + 1 is at least every delay of
    # attempt n (half the doubled ceiling is the old ceiling).
    for attempts in range(1, 8):
        assert min(samples[attempts + 1]) >= max(samples[attempts])
    capped = [backoff_delay(50, base=1.0, cap=30.0) for _ in range(100)]
    assert all(15.0 <= delay <= 30.0 for delay in capped)


async def test_a_job_failing_max_attempts_times_ends_failed_with_its_last_error(
    queue: JobQueue,
) -> None:
    job_id = await queue.enqueue(NOTIFY, AnyPayload(), max_attempts=3)

    statuses = []
    for attempt in range(1, 4):
        job = await claim_one(queue)
        statuses.append(await queue.fail(job, f"error {attempt}", retry_after=0))

    assert statuses == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.FAILED]
    assert job_id is not None
    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.FAILED
    assert stored.attempts == 3
    assert stored.last_error == "error 3"
    assert stored.lease_token is None
    assert await queue.claim() is None


async def test_fail_permanently_fails_at_once(queue: JobQueue) -> None:
    job_id = await queue.enqueue(NOTIFY, AnyPayload())
    job = await claim_one(queue)

    assert await queue.fail(job, "404 repository gone", permanent=True) is JobStatus.FAILED

    assert job_id is not None
    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.FAILED
    assert stored.attempts == 1
    assert stored.last_error == "404 repository gone"
    assert await queue.claim() is None


async def test_fail_keeps_a_bounded_error_text(queue: JobQueue) -> None:
    await queue.enqueue(NOTIFY, AnyPayload())
    job = await claim_one(queue)

    await queue.fail(job, "x" * 10_000, permanent=True)

    last_error = (await fetch(queue, job.id)).last_error
    assert last_error is not None and 0 < len(last_error) < 10_000


async def test_retry_queues_a_failed_job_again_with_fresh_attempts(queue: JobQueue) -> None:
    job_id = await queue.enqueue(NOTIFY, AnyPayload(), max_attempts=1)
    job = await claim_one(queue)
    assert await queue.fail(job, "gave up") is JobStatus.FAILED
    assert job_id is not None

    before = now()
    assert await queue.retry(job_id)

    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.QUEUED
    assert stored.attempts == 0
    assert before <= stored.run_after <= now()
    again = await claim_one(queue)
    assert again.id == job_id and again.attempts == 1


async def test_retry_of_a_job_that_is_not_failed_returns_false(queue: JobQueue) -> None:
    running_id = await queue.enqueue(NOTIFY, AnyPayload())
    done_id = await queue.enqueue(NOTIFY, AnyPayload())
    queued_id = await queue.enqueue(NOTIFY, AnyPayload(), delay=60)
    assert queued_id is not None and running_id is not None and done_id is not None
    running = await claim_one(queue)
    done = await claim_one(queue)
    assert (running.id, done.id) == (running_id, done_id)
    assert await queue.complete(done)

    for job_id in (queued_id, running_id, done_id, 999_999):
        assert not await queue.retry(job_id)

    assert (await fetch(queue, queued_id)).status is JobStatus.QUEUED
    assert (await fetch(queue, running_id)).status is JobStatus.RUNNING
    assert (await fetch(queue, running_id)).attempts == 1
    assert (await fetch(queue, done_id)).status is JobStatus.DONE


# --- inspection ----------------------------------------------------------------------------


async def test_counts_reports_every_status_even_when_empty(queue: JobQueue) -> None:
    assert await queue.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 0}


async def test_counts_reports_jobs_per_status(queue: JobQueue) -> None:
    for n in range(5):
        await queue.enqueue(NOTIFY, AnyPayload(n=n))
    done = await claim_one(queue)
    failed = await claim_one(queue)
    await claim_one(queue)  # stays running
    assert await queue.complete(done)
    assert await queue.fail(failed, "broken", permanent=True) is JobStatus.FAILED

    assert await queue.counts() == {"queued": 2, "running": 1, "done": 1, "failed": 1}


async def test_newest_returns_newest_first_filtered_by_status_and_limited(
    queue: JobQueue,
) -> None:
    ids = [await queue.enqueue(NOTIFY, AnyPayload(n=n)) for n in range(4)]
    first = await claim_one(queue)
    assert await queue.fail(first, "broken", permanent=True) is JobStatus.FAILED

    assert [job.id for job in await queue.newest()] == list(reversed(ids))
    assert [job.id for job in await queue.newest(limit=2)] == list(reversed(ids))[:2]
    failed = await queue.newest(status=JobStatus.FAILED)
    assert [job.id for job in failed] == [ids[0]]
    assert failed[0].last_error == "broken"
    queued = await queue.newest(status=JobStatus.QUEUED)
    assert [job.id for job in queued] == list(reversed(ids[1:]))
    assert await queue.newest(status=JobStatus.DONE) == []


class Delivery(BaseModel):
    """Shaped like a webhook's event job: the body may be queued as received."""

    delivery_id: str
    payload: dict[str, Any] | VerbatimJson
    note: str | None = None


DELIVERY = JobKind("delivery", Delivery)


async def test_a_verbatim_json_member_is_stored_as_its_text_and_read_back_as_its_document(
    queue: JobQueue,
) -> None:
    text = '{\n  "title": "caf\u00e9 é",\n  "labels": [1, 2.5, null]\n}'
    job_id = await queue.enqueue(DELIVERY, Delivery(delivery_id="d-1", payload=VerbatimJson(text)))
    assert job_id is not None

    row = await queue.store.fetch_one("SELECT payload FROM jobs WHERE id = :id", {"id": job_id})
    assert row is not None and text in row["payload"]
    job = await fetch(queue, job_id)
    assert job.payload == {"delivery_id": "d-1", "payload": json.loads(text)}
    read = DELIVERY.payload_of(job)
    assert read.payload == json.loads(text) == json_object(read.payload)


async def test_fields_left_at_their_default_are_not_stored(queue: JobQueue) -> None:
    """A job keeps the shape it had before payloads had models: what the caller set."""
    await queue.enqueue(DELIVERY, Delivery(delivery_id="d-1", payload={"a": 1}))
    await queue.enqueue(DELIVERY, Delivery(delivery_id="d-2", payload={}, note=None))

    first, second = sorted(await queue.newest(), key=lambda job: job.id)
    assert first.payload == {"delivery_id": "d-1", "payload": {"a": 1}}
    assert second.payload == {"delivery_id": "d-2", "payload": {}, "note": None}
    assert DELIVERY.payload_of(first) == Delivery(delivery_id="d-1", payload={"a": 1})


async def test_enqueue_takes_only_a_payload_of_the_kind_s_own_model(queue: JobQueue) -> None:
    with pytest.raises(TypeError, match="delivery jobs take a Delivery payload"):
        await queue.enqueue(DELIVERY, AnyPayload(delivery_id="d-1", payload={}))  # type: ignore[arg-type]

    assert await total_jobs(queue) == 0


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"payload": {}}, "delivery_id: Field required"),
        ({"delivery_id": "d-1", "payload": [1, 2]}, "payload.dict[str,any]: Input should be"),
        ({"delivery_id": 7, "payload": {}}, "delivery_id: Input should be a valid string"),
    ],
)
async def test_a_payload_that_does_not_fit_its_model_fails_its_job_for_good(
    store: Store, payload: dict[str, Any], problem: str
) -> None:
    await store.execute(
        "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_after,"
        " created_at, updated_at) VALUES ('delivery', :payload, 'queued', 0, 5, 0, 0, 0)",
        {"payload": json.dumps(payload)},
    )
    job = await claim_one(JobQueue(store))

    with pytest.raises(PermanentJobError) as failed:
        DELIVERY.payload_of(job)

    assert str(failed.value).startswith(f"delivery job {job.id}: its payload does not load: ")
    assert problem in str(failed.value)


async def test_a_payload_is_read_only_as_its_own_kind(queue: JobQueue) -> None:
    await queue.enqueue(NOTIFY, AnyPayload())
    job = await claim_one(queue)

    with pytest.raises(PermanentJobError, match="is a 'notify' job, not 'delivery'"):
        DELIVERY.payload_of(job)


@pytest.mark.parametrize(
    "payload",
    [
        {"only": VerbatimJson("[]")},
        {"a": VerbatimJson('{"x": 1}'), "b": VerbatimJson('"s"'), "c": {"d": [1]}},
        {'key "quoted"': VerbatimJson("2")},
        {"plain": "no verbatim member"},
    ],
)
def test_encode_payload_writes_one_json_object(payload: dict[str, object]) -> None:
    def plain(value: object) -> object:
        return json.loads(value.text) if isinstance(value, VerbatimJson) else value

    assert json.loads(encode_payload(payload)) == {key: plain(v) for key, v in payload.items()}


@pytest.mark.parametrize(
    ("content_type", "body", "verbatim"),
    [
        ("application/json", b"{}", True),
        ("Application/JSON; charset=UTF-8", '{"a": "é"}'.encode(), True),
        ('application/json; charset="utf8"', b"{}", True),
        ("application/json; charset=latin-1", '{"a": "é"}'.encode("latin-1"), False),
        ("application/json", '{"a": "é"}'.encode("latin-1"), False),  # not UTF-8
        ("application/x-www-form-urlencoded", b"payload=%7B%7D", False),
        (None, b"{}", False),
    ],
)
def test_only_a_utf8_json_body_is_kept_verbatim(
    content_type: str | None, body: bytes, verbatim: bool
) -> None:
    kept = VerbatimJson.of_body(body, content_type)
    assert (kept is not None) is verbatim
    if kept is not None:
        assert kept.text == body.decode()
