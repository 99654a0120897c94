"""`agent-relay github|gitlab redeliver`, and the record of a hook `gitlab
install-webhook` made: what the redelivery commands run (bots/redelivery.py)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import TYPE_CHECKING

from db.migrations import migrate
from db.store import Store
from relay.settings import Settings

if TYPE_CHECKING:
    from bots.gitlab.setup import HookOutcome


async def redeliver(
    settings: Settings, platform: str, since: float | None, *, scope: str | None = None
) -> int:
    """Read the platform's delivery log now and ask again for what failed."""
    from relay.app import Relay

    relay = Relay.build(settings)
    try:
        await relay.start(migrate_sqlite=False, schedule_maintenance=False)
        redelivery = relay.platforms[platform].redelivery
        if redelivery is None or not relay.platforms[platform].enabled:
            print(f"{platform} is not configured", file=sys.stderr)
            return 2
        run = await redelivery.run(
            since=None if since is None else time.time() - since, scope=scope
        )
    finally:
        await relay.close()
    print(f"{platform}: {run.summary()}")
    for delivery_id in run.requested_ids:
        print(f"  redelivery requested: {delivery_id}")
    if run.error:
        print(f"stopped early: {run.error}", file=sys.stderr)
        return 1
    return 0


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(raw: str) -> float:
    """`6h`, `30m`, `2d`, `90s`: seconds."""
    match = _DURATION.fullmatch(raw.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a duration like 6h, 30m, 2d or 90s")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


async def remember_gitlab_hook(settings: Settings, project: str, outcome: HookOutcome) -> int:
    """Record the hook, whose delivery log redelivery reads (bots.gitlab.hooks)."""
    from bots.gitlab.hooks import InstalledHook, remember_hook

    hook = InstalledHook(outcome.project_id, project, outcome.hook_id, outcome.url)
    try:
        async with Store(settings.database_url) as store:
            if store.is_sqlite:
                await migrate(store)  # as `serve` does on SQLite
            await remember_hook(store, hook)
    except Exception as exc:
        print(
            f"the hook is set up, but recording it for redelivery failed ({exc});"
            " run `agent-relay migrate`, then this command again",
            file=sys.stderr,
        )
        return 1
    return 0
