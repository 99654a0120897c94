"""`agent-relay`: serve, worker, migrate, and the operator's look at callbacks and jobs."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from agent.events import MalformedEvents, normalize_conversation_id
from db.callbacks import CallbackStatus, get_callback, list_callbacks
from db.job_kinds import JobStatus
from db.jobs import JobQueue
from db.migrations import migrate
from db.store import Store
from relay.logs import configure_logging
from relay.redeliver_command import duration, redeliver, remember_gitlab_hook
from relay.settings import Settings, load_settings

log = logging.getLogger("relay.cli")


def _when(epoch: float | None) -> str:
    return (
        "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
    )


def _keep_the_startup_heap_out_of_gc() -> None:
    """What exists once the app is built (modules, routes, settings, clients: some
    84,000 objects) lives as long as the process, yet every full collection walked
    it, holding the event loop 20-35 ms. Frozen, it is left out of collections: a
    full one under load then took 2.4 ms (issue 8's ingest benchmark)."""
    gc.collect()
    gc.freeze()


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from relay.app import create_app

    app = create_app(settings)
    _keep_the_startup_heap_out_of_gc()
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        proxy_headers=True,
        # A line per request costs about a tenth of the ingest path's time and says
        # nothing a proxy's access log does not; DEBUG turns it on.
        access_log=settings.log_level == "DEBUG",
    )
    return 0


def worker(settings: Settings, args: argparse.Namespace) -> int:
    from relay.app import Relay

    async def run() -> None:
        relay = Relay.build(settings)
        await relay.start(migrate_sqlite=False)
        _keep_the_startup_heap_out_of_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await relay.worker.run(stop)
        finally:
            await relay.close()

    asyncio.run(run())
    return 0


async def _with_store(settings: Settings, action: Callable[[Store], Awaitable[int]]) -> int:
    async with Store(settings.database_url) as store:
        return await action(store)


def migrate_command(settings: Settings, args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        applied = await migrate(store)
        print(f"applied migrations: {applied}" if applied else "schema is up to date")
        return 0

    return asyncio.run(_with_store(settings, action))


def callbacks_command(settings: Settings, args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        if args.callbacks_action == "show":
            callback = await get_callback(store, args.id)
            if callback is None:
                print(f"no callback {args.id}", file=sys.stderr)
                return 1
            print(json.dumps(callback.public_view(), indent=2))
            return 0
        status = CallbackStatus(args.status.upper()) if args.status else None
        listing = await list_callbacks(
            store,
            status=status,
            conversation_id=args.conversation_id,
            processor_type=args.processor_type,
            limit=args.limit,
        )
        for callback in listing:
            print(
                f"{callback.id:>6}  {callback.status.value:<9}  {callback.processor_type:<8}"
                f"  {callback.conversation_id}  {_when(callback.updated_at)}"
                f"  {callback.status_reason or ''}"
            )
        return 0

    return asyncio.run(_with_store(settings, action))


def jobs_command(settings: Settings, args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        queue = JobQueue(store)
        if args.jobs_action == "retry":
            if await queue.retry(args.id):
                print(f"job {args.id} queued again")
                return 0
            print(f"job {args.id} is not a failed job", file=sys.stderr)
            return 1
        status = JobStatus(args.status.lower()) if args.status else None
        for job in await queue.newest(status=status, limit=args.limit):
            print(
                f"{job.id:>6}  {job.status.value:<7}  {job.kind:<22}  attempts {job.attempts}/"
                f"{job.max_attempts}  next {_when(job.run_after)}  {job.last_error or ''}"
            )
        return 0

    return asyncio.run(_with_store(settings, action))


def slack_command(settings: Settings, args: argparse.Namespace) -> int:
    from bots.slack.manifest import render_manifest, render_socket_mode_manifest

    if args.socket_mode:
        print(render_socket_mode_manifest(), end="")
        return 0
    public_url = args.public_url or settings.public_url
    if not public_url:
        print("set PUBLIC_URL or pass --public-url", file=sys.stderr)
        return 2
    print(render_manifest(public_url), end="")
    return 0


def _github_manifest(settings: Settings, args: argparse.Namespace) -> int:
    from bots.github.manifest import manifest_text

    public_url = args.public_url or settings.public_url
    if not public_url:
        print("set PUBLIC_URL or pass --public-url", file=sys.stderr)
        return 2
    print(manifest_text(public_url), end="")
    return 0


def github_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.github_action == "manifest":
        return _github_manifest(settings, args)
    if args.github_action == "installations":
        return asyncio.run(_with_store(settings, _github_installations))
    if args.github_action == "redeliver":
        return asyncio.run(redeliver(settings, "github", args.since))
    raise AssertionError(f"unhandled github action {args.github_action!r}")


async def _github_installations(store: Store) -> int:
    from bots.github import PLATFORM
    from db.installations import list_installations

    rows = await list_installations(store, platform=PLATFORM)
    if not rows:
        print("no GitHub App installations recorded yet (they arrive as installation events)")
    for row in rows:
        repositories = row.details.get("repositories") or []
        print(
            f"{row.account_id:>10}  {row.status:<9}  {row.details.get('account') or '-':<20}"
            f"  {row.details.get('repository_selection') or '-':<8}  {len(repositories)} repos"
            f"  {_when(row.updated_at)}"
        )
    return 0


def gitlab_command(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    from agent.http import new_http_client
    from bots.gitlab.api import GitlabApi
    from bots.gitlab.setup import HookChange, install_webhook
    from db.job_kinds import PermanentJobError, RetryableJobError

    if args.gitlab_action == "redeliver":
        return asyncio.run(redeliver(settings, "gitlab", args.since, scope=args.project))
    public_url = args.public_url or settings.public_url
    token, secret = settings.gitlab_token, settings.gitlab_webhook_secret
    if not (public_url and token and secret):
        print("set GITLAB_TOKEN, GITLAB_WEBHOOK_SECRET and PUBLIC_URL", file=sys.stderr)
        return 2

    async def install() -> int:
        async with new_http_client(timeout=httpx.Timeout(30.0)) as http:
            api = GitlabApi(http, settings.gitlab_url, token.get_secret_value())
            try:
                outcome = await install_webhook(
                    api,
                    args.project,
                    public_url=public_url,
                    secret=secret.get_secret_value(),
                    resend_secret=args.resend_secret,
                )
            except (PermanentJobError, RetryableJobError) as exc:
                print(f"could not install the webhook: {exc}", file=sys.stderr)
                return 1
        if outcome.change is HookChange.UNCHANGED:
            print(f"{args.project}: hook {outcome.hook_id} to {outcome.url} is set up; unchanged")
        else:
            print(f"{args.project}: hook {outcome.hook_id} to {outcome.url} {outcome.change}")
        return await remember_gitlab_hook(settings, args.project, outcome)

    return asyncio.run(install())


def doctor_command(args: argparse.Namespace) -> int:
    """One line per check (relay/doctor); 1 when any failed. Settings that do not
    load are failed checks too, not a stop, so this runs before load_settings."""
    from bots.checks import CheckResult, skip
    from relay.app import Relay
    from relay.doctor.runner import Checks
    from relay.doctor.settings import settings_failures
    from relay.settings import SettingsError

    try:
        settings = load_settings()
    except SettingsError as exc:
        results = [
            *settings_failures(exc),
            skip("other checks", "they need settings that load"),
        ]
    else:
        # Only trouble is worth a log line here: the checks' lines are the report.
        configure_logging(
            "DEBUG" if settings.log_level == "DEBUG" else "WARNING", settings.log_format
        )

        async def run() -> list[CheckResult]:
            relay = Relay.build(settings)
            checks = Checks(
                relay,
                timeout=args.timeout,
                gitlab_project=args.gitlab_project,
                connect_database=True,
            )
            try:
                return await checks.run_all()
            finally:
                await relay.close()

        results = asyncio.run(run())
    for result in results:
        print(result.line())
    return 1 if any(result.failed for result in results) else 0


def _conversation_id(raw: str) -> str:
    # Rows hold the 32-hex form; operators may paste the dashed UUID.
    try:
        return normalize_conversation_id(raw)
    except MalformedEvents as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-relay", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="web server with in-process workers")
    serve_parser.add_argument("--host")
    serve_parser.add_argument("--port", type=int)
    serve_parser.set_defaults(run=serve)

    commands.add_parser("worker", help="workers only").set_defaults(run=worker)
    commands.add_parser("migrate", help="bring the schema up to date").set_defaults(
        run=migrate_command
    )

    callbacks = commands.add_parser("callbacks", help="inspect conversation callbacks")
    callbacks_actions = callbacks.add_subparsers(dest="callbacks_action", required=True)
    callbacks_list = callbacks_actions.add_parser("list")
    callbacks_list.add_argument("--status", choices=[s.value.lower() for s in CallbackStatus])
    callbacks_list.add_argument("--conversation-id", type=_conversation_id)
    callbacks_list.add_argument("--processor-type")
    callbacks_list.add_argument("--limit", type=int, default=50)
    callbacks_actions.add_parser("show").add_argument("id", type=int)
    callbacks.set_defaults(run=callbacks_command)

    jobs = commands.add_parser("jobs", help="inspect and retry jobs")
    jobs_actions = jobs.add_subparsers(dest="jobs_action", required=True)
    jobs_list = jobs_actions.add_parser("list")
    jobs_list.add_argument("--status", choices=[s.value for s in JobStatus])
    jobs_list.add_argument("--limit", type=int, default=50)
    jobs_actions.add_parser("retry").add_argument("id", type=int)
    jobs.set_defaults(run=jobs_command)

    slack = commands.add_parser("slack", help="set up the Slack app")
    slack_actions = slack.add_subparsers(dest="slack_action", required=True)
    slack_manifest = slack_actions.add_parser(
        "manifest", help="print the Slack app manifest for this deployment"
    )
    slack_manifest.add_argument("--public-url", help="the relay's public URL (default: PUBLIC_URL)")
    slack_manifest.add_argument(
        "--socket-mode",
        action="store_true",
        help="for Socket Mode (SLACK_APP_TOKEN): no request URLs, no public URL needed",
    )
    slack.set_defaults(run=slack_command)

    github = commands.add_parser("github", help="set up the GitHub App")
    github_actions = github.add_subparsers(dest="github_action", required=True)
    github_actions.add_parser(
        "manifest", help="print the GitHub App manifest for this deployment"
    ).add_argument("--public-url", help="the relay's public URL (default: PUBLIC_URL)")
    github_actions.add_parser("installations", help="list the app's installations and their status")
    github_actions.add_parser(
        "redeliver", help="ask GitHub again for the deliveries that failed to reach this relay"
    ).add_argument(
        "--since",
        type=duration,
        help="how far back to look, e.g. 6h (default: since the last look; at most 3 days)",
    )
    github.set_defaults(run=github_command)

    gitlab = commands.add_parser("gitlab", help="set up GitLab")
    gitlab_actions = gitlab.add_subparsers(dest="gitlab_action", required=True)
    install_hook = gitlab_actions.add_parser(
        "install-webhook", help="create or update the project's webhook to this relay"
    )
    install_hook.add_argument("--project", required=True, help="group/name or the project id")
    install_hook.add_argument("--public-url", help="the relay's public URL (default: PUBLIC_URL)")
    install_hook.add_argument(
        "--resend-secret",
        action="store_true",
        help="send GITLAB_WEBHOOK_SECRET again (GitLab never shows it, so it is not compared)",
    )
    gitlab_redeliver = gitlab_actions.add_parser(
        "redeliver", help="ask GitLab again for the hook events that failed to reach this relay"
    )
    gitlab_redeliver.add_argument("--project", help="group/name: only this project's hook")
    gitlab_redeliver.add_argument(
        "--since",
        type=duration,
        help="how far back to look, e.g. 6h (default: since the last look; at most 7 days)",
    )
    gitlab.set_defaults(run=gitlab_command)

    doctor = commands.add_parser(
        "doctor", help="check settings, database, agent-server, platforms and PUBLIC_URL"
    )
    doctor.add_argument(
        "--gitlab-project", help="group/name: also check that project's hook to this relay"
    )
    doctor.add_argument(
        "--timeout", type=float, default=5.0, help="seconds each check may take (default 5)"
    )
    doctor.set_defaults(run=doctor_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[..., int] = args.run
    if command is doctor_command:
        return doctor_command(args)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return command(settings, args)


if __name__ == "__main__":
    sys.exit(main())
