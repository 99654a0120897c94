"""Turn the agent's GitHub-flavoured markdown into Slack mrkdwn and cut it into postable messages.

Slack does not render markdown in a message's ``text``: it has its own "mrkdwn" dialect
(``*bold*``, ``_italic_``, ``~strike~``, ``<url|text>``) and treats ``&``, ``<`` and ``>`` as
control characters that must be sent as ``&amp;``, ``&lt;`` and ``&gt;`` whenever they are not
used for Slack's own markup. Slack's formatting reference makes no exception for code, so the
three characters are escaped inside code spans and blocks too (and nothing else there changes).

Why no library: ``markdown-to-mrkdwn`` 0.3.3 and ``slackify-markdown`` 0.2.4 were both tried
against the cases in ``tests/bots/test_slack_format.py``. ``markdown-to-mrkdwn`` rewrites
``**bold**`` inside inline code, keeps the fence's language tag, leaves ``+`` bullets alone,
escapes none of ``& < >`` and flattens tables into bold-header text. ``slackify-markdown`` does
not escape ``& < >`` inside code, leaves tables as raw pipe text, pads list markers to four
columns, swaps nested bullets for other glyphs and puts blank lines between some items. Each
would need patching around, so this small line-based converter is used instead.
"""

from __future__ import annotations

import bisect
import re

__all__ = ["markdown_to_mrkdwn", "split_for_slack"]

# --- markdown -> mrkdwn -------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(?P<text>.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^[ \t]{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]*)+(?P<rest>.*)$")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?P<rest>.*)$")
_ORDERED = re.compile(r"^(?P<indent>[ \t]*)(?P<marker>\d{1,9}[.)])[ \t]+(?P<rest>.*)$")
_TABLE_DELIMITER = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-+:?[ \t]*\|)*[ \t]*:?-+:?[ \t]*\|?[ \t]*$")

# A URL target, allowing one level of balanced parentheses (Wikipedia-style links).
_URL = r"(?:[^()\s]|\([^()\s]*\))+"
# Spans whose insides must not be touched by emphasis rules; found left to right in one pass.
_INLINE_TOKEN = re.compile(
    r"(?P<code>(?<!`)(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`))"
    rf"|!\[(?P<alt>[^\]]*)\]\((?P<image_url>{_URL})(?:[ \t]+\"[^\"]*\")?\)"
    rf"|\[(?P<label>[^\]]+)\]\((?P<link_url>{_URL})(?:[ \t]+\"[^\"]*\")?\)"
    r"|<(?P<autolink>(?:https?|mailto):[^<>\s]+)>"
    # A bare URL never ends on punctuation that more likely belongs to the sentence.
    r"|(?P<bare_url>https?://(?:[^\s<>()]|\([^\s<>()]*\))*"
    r"(?:[^\s<>()\].,;:!?*_~'\"]|\([^\s<>()]*\)))"
    r"|\\(?P<escaped>[!-/:-@\[-`{-~])"
)
# Private-use characters mark stashed spans and bold while the emphasis rules run, so that
# no rule can see (or produce) a Slack ``*`` that another rule would then rewrite.
_STASH = re.compile("\ue000(\\d+)\ue001")
_BOLD = "\ue002"
_EMPHASIS_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![*\w])\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*(?![*\w])"), _BOLD + r"_\1_" + _BOLD),
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"), _BOLD + r"\1" + _BOLD),
    (re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)"), _BOLD + r"\1" + _BOLD),
    (re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])"), r"_\1_"),
    (re.compile(r"(?<!~)~~(?=\S)(.+?)(?<=\S)~~(?!~)"), r"~\1~"),
)


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's three control characters, the only entities Slack decodes."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _render_token(match: re.Match[str]) -> str:
    """Render one protected inline span in its final mrkdwn form."""
    if match["code"] is not None:
        return escape_mrkdwn(match["code"])
    if match["image_url"] is not None:
        alt = _convert_inline(match["alt"])
        return f"<{match['image_url']}|{alt}>" if alt else f"<{match['image_url']}>"
    if match["link_url"] is not None:
        return f"<{match['link_url']}|{_convert_inline(match['label'])}>"
    if match["autolink"] is not None:
        return f"<{match['autolink']}>"
    if match["bare_url"] is not None:
        return match["bare_url"]
    return escape_mrkdwn(match["escaped"])


def _convert_inline(text: str, bold: str = "*") -> str:
    """Convert emphasis, links and escaping within one line.

    Code, links and URLs are swapped for placeholders first so that ``*`` or ``_`` inside
    them is never read as emphasis, and emphasis spanning a link still pairs up.
    """
    stashed: list[str] = []

    def stash(match: re.Match[str]) -> str:
        stashed.append(_render_token(match))
        return f"\ue000{len(stashed) - 1}\ue001"

    text = escape_mrkdwn(_INLINE_TOKEN.sub(stash, text))
    for pattern, replacement in _EMPHASIS_RULES:
        text = pattern.sub(replacement, text)
    text = text.replace(_BOLD, bold)
    return _STASH.sub(lambda match: stashed[int(match[1])], text)


def _convert_line(line: str) -> str:
    """Convert one line outside code and tables, block syntax first, then inline."""
    if heading := _HEADING.match(line):
        # A heading is already bold; inner bold markers would only close it early.
        return f"*{_convert_inline(heading['text'], bold='')}*"
    if _RULE.match(line):
        return line
    if quote := _QUOTE.match(line):
        rest = _convert_line(quote["rest"])
        return f"> {rest}" if rest else ">"
    if bullet := _BULLET.match(line):
        return f"{bullet['indent']}• {_convert_inline(bullet['rest'])}"
    if ordered := _ORDERED.match(line):
        return f"{ordered['indent']}{ordered['marker']} {_convert_inline(ordered['rest'])}"
    return _convert_inline(line)


def _closes_fence(line: str, fence: str) -> bool:
    """Tell whether ``line`` ends a code block that ``fence`` opened (same char, as long)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)


def _starts_table(lines: list[str], index: int) -> bool:
    """A GFM table is a row with pipes followed by a ``|---|---|`` delimiter row."""
    if index + 1 >= len(lines) or "|" not in lines[index]:
        return False
    delimiter = lines[index + 1]
    return "|" in delimiter and _TABLE_DELIMITER.match(delimiter) is not None


def markdown_to_mrkdwn(markdown: str) -> str:
    """Convert GitHub-flavoured markdown to Slack mrkdwn.

    Works line by line: fenced code blocks and tables are copied into plain triple-backtick
    blocks (only ``& < >`` escaped, since Slack has neither syntax highlighting nor tables),
    and every other line gets its block prefix (heading, quote, bullet) and inline markup
    rewritten. Bare URLs are left for Slack to link; link targets are not escaped.
    """
    lines = markdown.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = _FENCE_OPEN.match(line)
        if opening and not (opening["fence"][0] == "`" and "`" in opening["info"]):
            body: list[str] = []
            index += 1
            while index < len(lines) and not _closes_fence(lines[index], opening["fence"]):
                body.append(lines[index])
                index += 1
            index += 1  # the closing fence, or past the end when the block was left open
            out.extend(["```", *map(escape_mrkdwn, body), "```"])
        elif _starts_table(lines, index):
            rows: list[str] = []
            while index < len(lines) and "|" in lines[index] and lines[index].strip():
                rows.append(lines[index])
                index += 1
            out.extend(["```", *map(escape_mrkdwn, rows), "```"])
        else:
            out.append(_convert_line(line))
            index += 1
    return "\n".join(out)


# --- splitting into messages --------------------------------------------------------------------

_FENCE = "```"
_REOPEN = _FENCE + "\n"
_CLOSE = "\n" + _FENCE
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_ENTITIES = ("&amp;", "&lt;", "&gt;")
_MIN_LIMIT = 16


def _find_cut(text: str, floor: int, end: int) -> tuple[int, int]:
    """Pick where to end a chunk before ``end`` but after ``floor``, and where the next resumes.

    Prefers the last blank line, then the last line end, then the last space or tab; only
    when a line has none of these is it cut hard at ``end``.
    """
    # A break that starts right at ``end`` still fits: the separator itself is dropped.
    blank_line = None
    for match in _BLANK_LINE.finditer(text, floor):
        if match.start() > end:
            break
        blank_line = match
    if blank_line and blank_line.start() > floor:
        return blank_line.start(), blank_line.end()
    newline = text.rfind("\n", floor, end + 1)
    if newline > floor:
        return newline, newline + 1
    space = max(text.rfind(" ", floor, end + 1), text.rfind("\t", floor, end + 1))
    if space > floor:
        return space, space + 1
    # Hard cut: never split an entity we escaped, which Slack would then show half-raw.
    amp = text.rfind("&", max(floor, end - len("&amp;") + 1), end)
    if amp > floor and text.startswith(_ENTITIES, amp) and text.find(";", amp, end) == -1:
        return amp, amp
    return end, end


class _Fences:
    """A text's code fences, and where it may be cut without leaving one half in a chunk."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [match.start() for match in re.finditer(_FENCE, text)]

    def fence_at(self, position: int) -> int | None:
        """Return the start of the fence that straddles ``position``, if one does."""
        index = bisect.bisect_left(self.starts, position) - 1
        if index >= 0 and self.starts[index] < position < self.starts[index] + len(_FENCE):
            return self.starts[index]
        return None

    def in_code(self, position: int) -> bool:
        """Tell whether ``position`` lies between an opening and a closing fence."""
        return bisect.bisect_right(self.starts, position - len(_FENCE)) % 2 == 1

    def choose_cut(self, start: int, end: int) -> tuple[int, int]:
        """Pick a cut within ``text[start:end]`` that leaves no fence half in one chunk."""
        text, floor = self.text, start
        if text.startswith(_FENCE, start) and self.in_code(start + len(_FENCE)):
            # The chunk opens a code block: it must hold more than the opening fence line.
            floor = max(start, text.find("\n", start, end))
        cut, resume = _find_cut(text, floor, end)
        if (straddled := self.fence_at(cut)) is not None and straddled > start:
            cut = resume = straddled
        if self.in_code(cut):
            opening = self.starts[bisect.bisect_right(self.starts, cut - len(_FENCE)) - 1]
            if opening > start and "\n" not in text[opening:cut].rstrip():
                # Only the opening fence line would be left in this chunk: move it to the next.
                cut = resume = opening
            elif (
                text.startswith(_CLOSE, cut)
                and not text[cut + len(_CLOSE) : cut + len(_CLOSE) + 1].strip()
            ):
                # The block ends on the very next line: its own fence fits where ours would go.
                cut = resume = cut + len(_CLOSE)
        return cut, resume


def split_for_slack(text: str, limit: int = 3900) -> list[str]:
    """Split mrkdwn into messages of at most ``limit`` characters, in order, losing nothing.

    Slack truncates long messages, so a long answer is posted as several thread replies. A
    code block cut in two is closed with a triple-backtick fence at the end of one message and
    reopened at the start of the next, so each message renders on its own; those added fences
    count toward ``limit``. Whitespace at the cut points is dropped. Blank text gives no
    message at all.
    """
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT}, got {limit}")
    fences = _Fences(text)
    chunks: list[str] = []
    start = 0
    while True:
        while start < len(text) and text[start] in "\r\n":
            start += 1
        if not text[start:].strip():
            return chunks
        prefix = _REOPEN if fences.in_code(start) else ""
        end = start + limit - len(prefix)
        # First try the whole room; if the cut then needs a closing fence that does not fit,
        # choose again leaving room for it.
        for reserve in (0, len(_CLOSE)):
            if end - reserve >= len(text):
                cut = resume = len(text)
            else:
                cut, resume = fences.choose_cut(start, end - reserve)
            body = text[start:cut].rstrip()
            chunk = prefix + body + (_CLOSE if fences.in_code(cut) else "")
            if len(chunk) <= limit:
                break
        if body.strip():
            chunks.append(chunk)
        start = resume


def slack_link(url: str, label: str) -> str:
    """A link in mrkdwn."""
    return f"<{url}|{label}>"
