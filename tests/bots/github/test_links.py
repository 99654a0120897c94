"""bots/github/links.py: a GitHub thread key as the status page links it."""

from __future__ import annotations

from bots.github.links import GithubLinks, thread_link
from bots.links import Thread, ThreadLink
from db.store import Store


def test_an_issue_or_pull_request_links_to_its_issue_page() -> None:
    # GitHub sends /issues/{n} of a pull request on to /pull/{n}.
    assert thread_link("acme/web#12", "https://github.com/") == ThreadLink(
        "acme/web#12", "https://github.com/acme/web/issues/12"
    )


def test_a_review_thread_links_to_its_discussion() -> None:
    assert thread_link("acme/web#13/r4567", "https://github.example.com") == ThreadLink(
        "acme/web#13 (review thread)",
        "https://github.example.com/acme/web/pull/13#discussion_r4567",
    )


def test_a_key_that_is_not_a_thread_is_its_own_label_without_a_link() -> None:
    assert thread_link("acme#12", "https://github.com") == ThreadLink("acme#12", None)


async def test_links_use_the_configured_web_address(store: Store) -> None:
    links = await GithubLinks("https://github.example.com").thread_links(
        store, [Thread("acme/web#1", "a" * 32), Thread("acme/api#2", "b" * 32)]
    )

    assert [link.url for link in links] == [
        "https://github.example.com/acme/web/issues/1",
        "https://github.example.com/acme/api/issues/2",
    ]
