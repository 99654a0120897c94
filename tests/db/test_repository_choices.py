"""db/repository_choices.py on SQLite and PostgreSQL: a channel's repository, and a
mention's pick claimed once."""

from __future__ import annotations

import asyncio

from db.repository_choices import (
    PendingChoice,
    channel_repository,
    choice_at,
    claim_choice,
    get_choice,
    hold_choice,
    place_picker,
    set_channel_repository,
)
from db.store import Store

CHANNEL = "T0ACME:C0BUILDS"


async def test_a_channels_repository_is_set_replaced_and_cleared(store: Store) -> None:
    assert await channel_repository(store, "slack", CHANNEL) is None

    await set_channel_repository(store, "slack", CHANNEL, "acme/api", set_by="U0ADA")
    await set_channel_repository(store, "slack", CHANNEL, "acme/web", set_by="U0OTTO")
    assert await channel_repository(store, "slack", CHANNEL) == "acme/web"
    assert await channel_repository(store, "slack", "T0ACME:C0OTHER") is None

    await set_channel_repository(store, "slack", CHANNEL, None, set_by="U0ADA")
    assert await channel_repository(store, "slack", CHANNEL) is None


def pending(delivery_id: str = "Ev1", payload: str = '{"a": 1}') -> PendingChoice:
    return PendingChoice("slack", delivery_id, f"{CHANNEL}:1.0", "U0ADA", "slack.event", payload)


async def test_a_held_mention_is_kept_as_first_recorded(store: Store) -> None:
    first = await hold_choice(store, pending())
    again = await hold_choice(store, pending(payload='{"a": 2}'))

    assert first == again and again.payload == '{"a": 1}'
    await place_picker(store, "slack", "Ev1", f"{CHANNEL}:2.0")
    found = await choice_at(store, "slack", f"{CHANNEL}:2.0")
    assert found is not None and found.delivery_id == "Ev1"
    assert await choice_at(store, "slack", f"{CHANNEL}:3.0") is None


async def test_of_picks_made_together_one_is_claimed(store: Store) -> None:
    await hold_choice(store, pending())

    claims = await asyncio.gather(
        *(
            claim_choice(store, "slack", "Ev1", f"github:acme/r{n}", chosen_by="U0ADA")
            for n in range(5)
        )
    )

    assert sorted(claims) == [False] * 4 + [True]
    stored = await get_choice(store, "slack", "Ev1")
    assert stored is not None and stored.chosen == f"github:acme/r{claims.index(True)}"
    assert stored.chosen_by == "U0ADA"
