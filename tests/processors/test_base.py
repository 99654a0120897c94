"""What ReplyingProcessor's helpers promise every platform."""

from __future__ import annotations

from processors.base import trim_to_limit


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
