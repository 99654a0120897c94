"""Schema migrations that run on SQLite and PostgreSQL alike.

Alembic needs a synchronous driver and engine; the project talks to both databases
only through its async Store (asyncpg, and sqlite3 on the event loop), so the
migrations are a short ordered list of SQL statements, written once with the two
dialect differences (auto-increment keys and floating-point columns) filled in per
database.
"""

from __future__ import annotations

import logging

from db.store import Store, now

log = logging.getLogger(__name__)

_DIALECT_TYPES = {
    "sqlite": {"id_pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"},
    "postgresql": {"id_pk": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"},
}

# Every timestamp is epoch seconds in a {real} column: one representation that both
# databases compare and order the same way.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "callbacks, deliveries, jobs, agent conversations",
        [
            """CREATE TABLE conversation_callbacks (
                id {id_pk},
                conversation_id TEXT NOT NULL,
                status TEXT NOT NULL,
                processor_type TEXT NOT NULL,
                processor_json TEXT NOT NULL,
                status_reason TEXT,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL
            )""",
            "CREATE INDEX ix_callbacks_conversation"
            " ON conversation_callbacks (conversation_id, status)",
            """CREATE TABLE inbound_deliveries (
                source TEXT NOT NULL,
                delivery_id TEXT NOT NULL,
                received_at {real} NOT NULL,
                PRIMARY KEY (source, delivery_id)
            )""",
            """CREATE TABLE jobs (
                id {id_pk},
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                job_key TEXT,
                idempotency_key TEXT UNIQUE,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL,
                run_after {real} NOT NULL,
                lease_token TEXT,
                lease_until {real},
                last_error TEXT,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL
            )""",
            "CREATE INDEX ix_jobs_ready ON jobs (status, run_after)",
            "CREATE INDEX ix_jobs_key ON jobs (job_key, status)",
            """CREATE TABLE agent_conversations (
                conversation_id TEXT PRIMARY KEY,
                execution_status TEXT,
                last_agent_event_kind TEXT,
                updated_at {real} NOT NULL
            )""",
        ],
    ),
    (
        2,
        "conversation links, installations, OAuth states",
        [
            # One row per platform thread (keyed by the platform's triggers.thread_key)
            # that has a conversation; `cursor` is the platform's marker of the last
            # message the agent was given (a Slack ts, a comment id), so a follow-up
            # sends only what is new.
            """CREATE TABLE conversation_links (
                platform TEXT NOT NULL,
                thread_key TEXT NOT NULL,
                conversation_id TEXT NOT NULL,
                cursor TEXT,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL,
                PRIMARY KEY (platform, thread_key)
            )""",
            "CREATE INDEX ix_links_conversation ON conversation_links (conversation_id)",
            # Workspaces and app installations. `details` is plain JSON for
            # operators; `credentials` is encrypted with SECRET_KEY (db.secrets).
            """CREATE TABLE installations (
                platform TEXT NOT NULL,
                account_id TEXT NOT NULL,
                status TEXT NOT NULL,
                details TEXT NOT NULL,
                credentials TEXT,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL,
                PRIMARY KEY (platform, account_id)
            )""",
            # Single-use OAuth states (Slack install, GitHub manifest flow).
            """CREATE TABLE oauth_states (
                state TEXT PRIMARY KEY,
                platform TEXT NOT NULL,
                expires_at {real} NOT NULL
            )""",
        ],
    ),
    (
        3,
        "indexes for retention",
        [
            # What db/retention.py deletes or empties. Partial indexes: a job enters
            # ix_jobs_done once, when it is done, not on each claim; and a callback
            # leaves ix_callbacks_prunable once emptied, so each run walks only rows
            # still to prune, not every closed callback ever. (status leads in
            # ix_jobs_done although constant: SQLite's planner, without statistics,
            # then prefers it to ix_jobs_ready.)
            "CREATE INDEX ix_jobs_done ON jobs (status, updated_at) WHERE status = 'done'",
            "CREATE INDEX ix_deliveries_received ON inbound_deliveries (received_at)",
            "CREATE INDEX ix_callbacks_prunable ON conversation_callbacks (status, updated_at)"
            " WHERE processor_json <> ''",
        ],
    ),
    (
        4,
        "partial indexes for claiming jobs",
        [
            # db/jobs.py walks these in claim order and stops at the first job whose
            # key is free, instead of sorting every due job. They hold only queued
            # (or running) rows, so they stay small however many jobs are done.
            "CREATE INDEX ix_jobs_queued ON jobs (run_after, id) WHERE status = 'queued'",
            "CREATE INDEX ix_jobs_leases ON jobs (lease_until, id) WHERE status = 'running'",
        ],
    ),
    (
        5,
        "workspaces",
        [
            # One row per conversation that has a checkout (db/workspaces.py). The
            # credentials capability is kept only as its SHA-256; the token minted for
            # the agent is encrypted with SECRET_KEY (db.secrets), or not stored at all.
            """CREATE TABLE workspaces (
                conversation_id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                repository TEXT NOT NULL,
                locator TEXT NOT NULL,
                mode TEXT NOT NULL,
                working_dir TEXT NOT NULL,
                base_branch TEXT NOT NULL,
                branch TEXT,
                plan TEXT NOT NULL,
                request TEXT NOT NULL,
                capability_hash TEXT NOT NULL,
                token_ciphertext TEXT,
                token_expires_at {real},
                checked_out_at {real},
                turn_start_sha TEXT,
                change_request TEXT,
                last_turn_ended_at {real},
                removed_at {real},
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL
            )""",
            "CREATE INDEX ix_workspaces_ended ON workspaces (last_turn_ended_at)"
            " WHERE removed_at IS NULL",
        ],
    ),
    (
        6,
        "reconciliation with the agent-server",
        [
            # The ACTIVE callbacks in id order, which processors/reconcile.py walks a
            # bounded window of per run; only ACTIVE rows, so it stays small.
            "CREATE INDEX ix_callbacks_active ON conversation_callbacks (id)"
            " WHERE status = 'ACTIVE'",
            # What the periodic jobs remember between runs (db/marks.py): a cursor, the
            # time of the last look, the last run's counts for the status page.
            """CREATE TABLE relay_marks (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at {real} NOT NULL
            )""",
        ],
    ),
    (
        7,
        "turn status messages",
        [
            # The live status of a conversation's current turn (processors/progress.py),
            # beside what the intake already locks and updates for every batch: a
            # conversation without a status message costs the intake nothing more.
            f"ALTER TABLE agent_conversations ADD COLUMN {column}"
            for column in (
                "status_callback_id BIGINT",
                "status_interval {real}",
                "status_steps INTEGER NOT NULL DEFAULT 0",
                "status_step TEXT",
                "status_generation INTEGER NOT NULL DEFAULT 0",
                "status_edited_at {real}",
                "status_editing_until {real}",
                "status_shown TEXT",
                "status_final INTEGER NOT NULL DEFAULT 0",
                "status_stopped_by TEXT",
            )
        ],
    ),
    (
        8,
        "approval requests",
        [
            # What the agent asked to run and who answered (db/approvals.py). One row
            # per held batch of actions: the oldest held action's id makes a second
            # record of the same stop (a webhook and a reconciliation) a no-op.
            """CREATE TABLE approvals (
                id {id_pk},
                conversation_id TEXT NOT NULL,
                callback_id BIGINT NOT NULL,
                action_id TEXT NOT NULL,
                actions TEXT NOT NULL,
                state TEXT NOT NULL,
                message_id TEXT,
                accept INTEGER,
                reason TEXT,
                answered_by TEXT,
                answer_delivery_id TEXT,
                created_at {real} NOT NULL,
                answered_at {real},
                UNIQUE (conversation_id, action_id)
            )""",
            "CREATE INDEX ix_approvals_pending ON approvals (conversation_id)"
            " WHERE state = 'pending'",
        ],
    ),
    (
        9,
        "channel repositories and mentions waiting for a repository",
        [
            # A channel's default repository (`@openhands use owner/name`), per
            # platform and channel key (Slack: "{team}:{channel}").
            """CREATE TABLE channel_repositories (
                platform TEXT NOT NULL,
                channel_key TEXT NOT NULL,
                repository TEXT NOT NULL,
                set_by TEXT,
                updated_at {real} NOT NULL,
                PRIMARY KEY (platform, channel_key)
            )""",
            # A mention that named no repository, held until the person who asked
            # picks one (db/repository_choices.py): what to run again, and whether
            # it was picked, so that a second pick does nothing.
            """CREATE TABLE repository_choices (
                platform TEXT NOT NULL,
                delivery_id TEXT NOT NULL,
                thread_key TEXT NOT NULL,
                asker TEXT NOT NULL,
                job_kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                picker_ref TEXT,
                chosen TEXT,
                chosen_by TEXT,
                chosen_at {real},
                created_at {real} NOT NULL,
                PRIMARY KEY (platform, delivery_id)
            )""",
            "CREATE UNIQUE INDEX ix_repository_choices_picker"
            " ON repository_choices (platform, picker_ref)",
        ],
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]


async def _ensure_version_table(store: Store) -> None:
    await store.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at "
        + _DIALECT_TYPES[store.dialect]["real"]
        + " NOT NULL)"
    )


async def current_version(store: Store) -> int:
    """The schema version; read-only, so that readiness probes never write."""
    if store.is_sqlite:
        exists = await store.fetch_one(
            "SELECT 1 AS found FROM sqlite_master WHERE type = 'table'"
            " AND name = 'schema_migrations'"
        )
    else:
        exists = await store.fetch_one(
            "SELECT 1 AS found WHERE to_regclass('schema_migrations') IS NOT NULL"
        )
    if exists is None:
        return 0
    row = await store.fetch_one("SELECT MAX(version) AS version FROM schema_migrations")
    return int(row["version"]) if row and row["version"] is not None else 0


async def migrate(store: Store) -> list[int]:
    """Apply every migration newer than the database's version; returns those applied."""
    applied: list[int] = []
    await _ensure_version_table(store)
    types = _DIALECT_TYPES[store.dialect]
    for version, description, statements in MIGRATIONS:
        async with store.transaction():
            if store.dialect == "postgresql":
                # Two replicas starting together must not both run one migration.
                await store.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            if version <= await current_version(store):
                continue
            for statement in statements:
                await store.execute(statement.format(**types))
            await store.execute(
                "INSERT INTO schema_migrations (version, description, applied_at)"
                " VALUES (:version, :description, :applied_at)",
                {"version": version, "description": description, "applied_at": now()},
            )
        log.info("applied migration %d: %s", version, description)
        applied.append(version)
    return applied


async def is_current(store: Store) -> bool:
    return await current_version(store) == LATEST_VERSION
