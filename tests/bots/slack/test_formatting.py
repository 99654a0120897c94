"""Exact-output tests for the markdown -> Slack mrkdwn converter and the message splitter."""

from __future__ import annotations

import random
import re

import pytest

from bots.slack.formatting import markdown_to_mrkdwn, split_for_slack

# --- markdown_to_mrkdwn -------------------------------------------------------------------------


def test_bold_with_asterisks() -> None:
    assert markdown_to_mrkdwn("a **bold** b") == "a *bold* b"


def test_bold_with_underscores() -> None:
    assert markdown_to_mrkdwn("a __bold__ b") == "a *bold* b"


def test_italic_with_asterisk() -> None:
    assert markdown_to_mrkdwn("a *it* b") == "a _it_ b"


def test_italic_with_underscore() -> None:
    assert markdown_to_mrkdwn("a _it_ b") == "a _it_ b"


def test_bold_and_italic_nested() -> None:
    assert markdown_to_mrkdwn("**all *of* it** and ***both***") == "*all _of_ it* and *_both_*"


def test_strikethrough() -> None:
    assert markdown_to_mrkdwn("a ~~gone~~ b") == "a ~gone~ b"


def test_no_emphasis_from_snake_case_or_arithmetic() -> None:
    assert markdown_to_mrkdwn("snake_case_name and 2 * 3 * 4") == "snake_case_name and 2 * 3 * 4"


def test_link() -> None:
    assert (
        markdown_to_mrkdwn("see [the docs](https://example.com/a?b=1) now")
        == "see <https://example.com/a?b=1|the docs> now"
    )


def test_link_url_is_not_escaped_nor_emphasised_but_label_is_converted() -> None:
    assert (
        markdown_to_mrkdwn("[**R&D** notes](https://x.com/a_b_c?x=1&y=2)")
        == "<https://x.com/a_b_c?x=1&y=2|*R&amp;D* notes>"
    )


def test_bold_around_a_link() -> None:
    assert markdown_to_mrkdwn("**see [docs](https://x.com)**") == "*see <https://x.com|docs>*"


def test_link_with_parentheses_in_url() -> None:
    assert (
        markdown_to_mrkdwn("[Foo](https://en.wikipedia.org/wiki/Foo_(bar))")
        == "<https://en.wikipedia.org/wiki/Foo_(bar)|Foo>"
    )


def test_autolink_and_image() -> None:
    assert (
        markdown_to_mrkdwn("<https://a.com/x> ![chart](https://a.com/c.png)")
        == "<https://a.com/x> <https://a.com/c.png|chart>"
    )


def test_bare_url_left_as_is() -> None:
    assert (
        markdown_to_mrkdwn("see https://example.com/some_path_here?a=1&b=2.")
        == "see https://example.com/some_path_here?a=1&b=2."
    )


def test_bare_url_does_not_swallow_closing_parenthesis() -> None:
    assert markdown_to_mrkdwn("(see https://example.com/a)") == "(see https://example.com/a)"


def test_bare_url_inside_bold() -> None:
    assert markdown_to_mrkdwn("**https://example.com/a**") == "*https://example.com/a*"


def test_headings_become_bold_lines() -> None:
    assert markdown_to_mrkdwn("# Title") == "*Title*"
    assert markdown_to_mrkdwn("### Sub title ###") == "*Sub title*"


def test_heading_with_inner_bold_is_bold_once() -> None:
    assert markdown_to_mrkdwn("## The **main** point") == "*The main point*"


def test_hashtag_is_not_a_heading() -> None:
    assert markdown_to_mrkdwn("#general") == "#general"


def test_unordered_list_markers_become_bullets() -> None:
    assert markdown_to_mrkdwn("- a\n* b\n+ c") == "• a\n• b\n• c"


def test_nested_list_keeps_indentation() -> None:
    assert markdown_to_mrkdwn("- a\n  - b\n    - **c**\n- d") == "• a\n  • b\n    • *c*\n• d"


def test_ordered_list_kept() -> None:
    assert markdown_to_mrkdwn("1. one\n2. **two**\n   1. inner") == "1. one\n2. *two*\n   1. inner"


def test_horizontal_rule_is_not_a_bullet() -> None:
    assert markdown_to_mrkdwn("- - -") == "- - -"


def test_blockquote_kept_and_converted() -> None:
    assert markdown_to_mrkdwn("> quoted **x** & y") == "> quoted *x* &amp; y"


def test_blockquote_with_list_and_nesting() -> None:
    assert markdown_to_mrkdwn("> - item\n>> deeper\n>") == "> • item\n> deeper\n>"


def test_fenced_code_drops_language_and_keeps_content() -> None:
    markdown = "```python\nx = **y** if _a_ else [b](c)\n    # indented\n```"
    assert markdown_to_mrkdwn(markdown) == (
        "```\nx = **y** if _a_ else [b](c)\n    # indented\n```"
    )


def test_fenced_code_escapes_slack_control_characters() -> None:
    assert markdown_to_mrkdwn("```\nif a < b && c > d:\n```") == (
        "```\nif a &lt; b &amp;&amp; c &gt; d:\n```"
    )


def test_tilde_fence_and_unclosed_fence() -> None:
    assert markdown_to_mrkdwn("~~~sh\nls -la\n~~~\ntext") == "```\nls -la\n```\ntext"
    assert markdown_to_mrkdwn("```\nnever closed *x*") == "```\nnever closed *x*\n```"


def test_fence_lines_around_text() -> None:
    markdown = "Run:\n\n```bash\necho **hi**\n```\n\nDone **now**."
    assert markdown_to_mrkdwn(markdown) == "Run:\n\n```\necho **hi**\n```\n\nDone *now*."


def test_inline_code_not_altered() -> None:
    assert markdown_to_mrkdwn("run `a **b** _c_ [d](e)` now") == "run `a **b** _c_ [d](e)` now"


def test_inline_code_escapes_slack_control_characters() -> None:
    assert markdown_to_mrkdwn("use `x<y && z>0`") == "use `x&lt;y &amp;&amp; z&gt;0`"


def test_text_escaping() -> None:
    assert markdown_to_mrkdwn("a & b < c > d") == "a &amp; b &lt; c &gt; d"


def test_html_is_shown_literally() -> None:
    assert markdown_to_mrkdwn("line<br>next") == "line&lt;br&gt;next"


def test_backslash_escapes_give_the_literal_character() -> None:
    assert markdown_to_mrkdwn(r"\_not italic\_ and \<tag\>") == "_not italic_ and &lt;tag&gt;"


def test_table_becomes_code_block() -> None:
    markdown = "Results:\n\n| a | b & c |\n|---|:---:|\n| **1** | 2 |\n\nAfter."
    assert markdown_to_mrkdwn(markdown) == (
        "Results:\n\n```\n| a | b &amp; c |\n|---|:---:|\n| **1** | 2 |\n```\n\nAfter."
    )


def test_pipe_without_delimiter_row_is_not_a_table() -> None:
    assert markdown_to_mrkdwn("a | b\nc | d") == "a | b\nc | d"


def test_crlf_line_endings() -> None:
    assert markdown_to_mrkdwn("# T\r\n- a\r\n") == "*T*\n• a\n"


def test_full_answer() -> None:
    markdown = (
        "## Summary\n"
        "\n"
        "The **fix** is in `relay/app.py` (see [PR](https://git.example/pr/1)).\n"
        "\n"
        "- step *one*\n"
        "  - sub ~~step~~\n"
        "\n"
        "```diff\n"
        "- old <a>\n"
        "+ new <b>\n"
        "```"
    )
    assert markdown_to_mrkdwn(markdown) == (
        "*Summary*\n"
        "\n"
        "The *fix* is in `relay/app.py` (see <https://git.example/pr/1|PR>).\n"
        "\n"
        "• step _one_\n"
        "  • sub ~step~\n"
        "\n"
        "```\n"
        "- old &lt;a&gt;\n"
        "+ new &lt;b&gt;\n"
        "```"
    )


# --- split_for_slack ----------------------------------------------------------------------------


def _content(text: str) -> str:
    """Non-whitespace characters in order, fences aside (split_for_slack adds fences)."""
    return re.sub(r"\s+", "", text).replace("```", "")


def _assert_well_formed(text: str, chunks: list[str], limit: int) -> None:
    """Limit respected, no empty chunk, no code block left open, all content in order."""
    assert chunks
    for chunk in chunks:
        assert 0 < len(chunk) <= limit
        assert chunk.strip()
        assert chunk.count("```") % 2 == 0, chunk
    assert _content("".join(chunks)) == _content(text)


def test_empty_and_blank_text_give_no_chunk() -> None:
    assert split_for_slack("") == []
    assert split_for_slack(" \n\n\t ") == []


def test_short_text_is_one_chunk() -> None:
    assert split_for_slack("hello *world*") == ["hello *world*"]
    assert split_for_slack("\n\nhello\n\n") == ["hello"]


def test_text_at_exactly_the_limit_is_one_chunk() -> None:
    assert split_for_slack("x" * 20, limit=20) == ["x" * 20]


def test_limit_too_small_is_refused() -> None:
    with pytest.raises(ValueError):
        split_for_slack("text", limit=10)


def test_splits_at_paragraph_before_line() -> None:
    text = "aaaa\nbbbb\n\ncccc\ndddd\neeee"
    assert split_for_slack(text, limit=20) == ["aaaa\nbbbb", "cccc\ndddd\neeee"]


def test_splits_at_line_when_paragraph_too_long() -> None:
    text = "line one\nline two\nline three"
    assert split_for_slack(text, limit=18) == ["line one\nline two", "line three"]


def test_splits_long_line_at_whitespace() -> None:
    text = "alpha beta gamma delta epsilon"
    assert split_for_slack(text, limit=16) == ["alpha beta gamma", "delta epsilon"]


def test_hard_cut_without_whitespace() -> None:
    assert split_for_slack("x" * 45, limit=20) == ["x" * 20, "x" * 20, "x" * 5]


def test_hard_cut_does_not_split_an_entity() -> None:
    assert split_for_slack("a" * 13 + "&amp;b", limit=16) == ["a" * 13, "&amp;b"]


def test_code_block_is_closed_and_reopened() -> None:
    text = "```\n" + "line\n" * 10 + "```\nafter"
    assert split_for_slack(text, limit=30) == [
        "```\nline\nline\nline\nline\n```",
        "```\nline\nline\nline\nline\n```",
        "```\nline\nline\n```\nafter",
    ]


def test_code_block_opening_fence_moves_with_its_content() -> None:
    text = "intro text here\n```\n0123456789\n0123456789\n```"
    assert split_for_slack(text, limit=24) == [
        "intro text here",
        "```\n0123456789\n```",
        "```\n0123456789\n```",
    ]


def test_long_code_line_is_cut_inside_the_block() -> None:
    text = "```\n" + "y" * 30 + "\n```"
    assert split_for_slack(text, limit=20) == [
        "```\n" + "y" * 12 + "\n```",
        "```\n" + "y" * 12 + "\n```",
        "```\n" + "y" * 6 + "\n```",
    ]


def test_unclosed_code_block_is_closed() -> None:
    assert split_for_slack("```\nunclosed code here", limit=20) == [
        "```\nunclosed\n```",
        "```\ncode here\n```",
    ]


def test_generated_paragraphs() -> None:
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "*bold*", "_it_", "&amp;", "<https://x.io|x>"]
    paragraphs = [
        " ".join(rng.choice(words) for _ in range(rng.randint(5, 120))) for _ in range(60)
    ]
    text = "\n\n".join(paragraphs)
    chunks = split_for_slack(text, limit=500)
    _assert_well_formed(text, chunks, 500)
    assert len(chunks) > 5
    # Every paragraph short enough to fit is kept whole within one chunk.
    for paragraph in paragraphs:
        if len(paragraph) <= 500:
            assert any(paragraph in chunk for chunk in chunks)


def test_generated_long_code_blocks() -> None:
    rng = random.Random(2)
    parts = []
    for index in range(8):
        parts.append(f"Step {index} explains the code below.")
        body = "\n".join(f"    value_{n} = {rng.randint(0, 10**9)}" for n in range(80))
        parts.append(f"```\n{body}\n```")
    text = "\n\n".join(parts)
    chunks = split_for_slack(text, limit=700)
    _assert_well_formed(text, chunks, 700)
    reopened = [
        i
        for i, chunk in enumerate(chunks)
        if chunk.startswith("```\n    value_") and not chunk.startswith("```\n    value_0 ")
    ]
    assert reopened
    assert all(chunks[i - 1].endswith("\n```") for i in reopened)


def test_single_ten_thousand_character_line() -> None:
    rng = random.Random(3)
    text = "".join(rng.choice("abcdefghij") for _ in range(10_000))
    chunks = split_for_slack(text)
    _assert_well_formed(text, chunks, 3900)
    assert "".join(chunks) == text
    assert [len(chunk) for chunk in chunks] == [3900, 3900, 2200]


def test_converted_answer_round_trip() -> None:
    code = "\n".join(f"print({n} < {n + 1})" for n in range(400))
    markdown = "# Report\n\nSome **text** here.\n\n```python\n" + code + "\n```\n\n- done"
    text = markdown_to_mrkdwn(markdown)
    chunks = split_for_slack(text, limit=1000)
    _assert_well_formed(text, chunks, 1000)
    assert chunks[0].startswith("*Report*\n\nSome *text* here.")
    assert chunks[-1].endswith("```\n\n• done")
