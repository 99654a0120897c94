"""The words the bot says on every platform."""

from __future__ import annotations

from bots.texts import acknowledgement, trim_to_limit


def test_acknowledgement_links_the_conversation_when_it_can() -> None:
    linked = acknowledgement("https://a.test/c/1", continuing=False, where="this thread")
    assert linked == "On it! Follow along [here](https://a.test/c/1); I'll answer in this thread."
    plain = acknowledgement(None, continuing=True, where="this thread")
    assert plain == "On it, continuing our conversation. I'll answer in this thread."


def test_text_within_the_limit_is_left_alone() -> None:
    assert trim_to_limit("short", 5, "https://a.test/c/1") == "short"


def test_long_text_is_cut_to_the_limit_and_says_where_the_rest_is() -> None:
    trimmed = trim_to_limit("word " * 1000, 300, "https://a.test/c/1")
    assert len(trimmed) <= 300
    assert trimmed.startswith("word word")
    assert trimmed.endswith("The full conversation: https://a.test/c/1*")


def test_long_text_without_a_link_still_says_it_was_shortened() -> None:
    trimmed = trim_to_limit("x" * 500, 200, None)
    assert len(trimmed) <= 200
    assert "shortened" in trimmed
