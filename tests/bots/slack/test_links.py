"""bots/slack/links.py: a Slack thread key as the status page links it."""

from __future__ import annotations

from bots.links import Thread, ThreadLink
from bots.slack.links import SlackLinks, thread_link
from db.store import Store


def test_a_thread_links_to_slacks_redirect_to_its_channel() -> None:
    assert thread_link("T0001:C0002:1700000000.000100") == ThreadLink(
        "C0002 thread 1700000000.000100",
        "https://slack.com/app_redirect?team=T0001&channel=C0002",
    )


def test_a_key_that_is_not_a_thread_is_its_own_label_without_a_link() -> None:
    assert thread_link("T0001:C0002") == ThreadLink("T0001:C0002", None)


async def test_links_keep_the_threads_order(store: Store) -> None:
    links = await SlackLinks().thread_links(
        store, [Thread("T1:C1:1.1", "a" * 32), Thread("T1:C2:2.2", "b" * 32)]
    )

    assert [link.label for link in links] == ["C1 thread 1.1", "C2 thread 2.2"]
