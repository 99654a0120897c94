"""What GitHub and GitLab comments share when deciding whether they call the bot:
the words their author wrote (quotes and code aside), the mention as a whole word,
the request without it, and the repository a request is about."""

from __future__ import annotations

import re

# Markdown that quotes or shows code rather than speaking to the bot: fenced blocks
# (``` or ~~~, closed or running to the end), inline code spans, and ">" quote lines.
_FENCED_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\1[ \t]*$|\Z)", re.M | re.S)
_INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_QUOTE_LINE = re.compile(r"^ {0,3}>.*$", re.M)

# owner/repo as people write it: GitHub and GitLab URLs first, then a bare
# owner/name. GitLab groups nest (group/subgroup/project).
_REPOSITORY_URL = re.compile(
    r"https?://(?:www\.)?(?:github\.com|gitlab\.com|[\w.-]*git[\w.-]*)/"
    r"(?P<path>[\w.-]+(?:/[\w.-]+)+)"
)
_REPOSITORY_NAME = re.compile(r"(?<![\w./:@-])(?P<path>[A-Za-z0-9][\w.-]*/[\w.-]*\w)(?![\w/])")
# Pairs people write with a slash that are not repositories.
_NOT_REPOSITORIES = {"and/or", "either/or", "read/write", "input/output", "yes/no", "true/false"}
# Path segments of a repository URL that are not part of the repository's name.
_URL_STOP_SEGMENTS = {"-", "issues", "pull", "pulls", "merge_requests", "blob", "tree", "commit"}


def spoken_text(markdown: str) -> str:
    """The parts of a GitHub/GitLab comment its author wrote themselves: quotes
    (replies quote earlier comments, mentions and all) and code removed."""
    text = _FENCED_BLOCK.sub("\n", markdown)
    text = _INLINE_CODE.sub(" ", text)
    return _QUOTE_LINE.sub("", text)


def _mention_pattern(mention: str) -> re.Pattern[str]:
    # A whole word: "@openhands" but not "@openhands-bot", "@openhandsx" or an
    # e-mail address such as "me@openhands.dev".
    return re.compile(rf"(?<![\w@.-]){re.escape(mention)}(?![\w-]|\.\w)", re.I)


def mentions_bot(markdown: str, mention: str) -> bool:
    """True when `mention` (e.g. "@openhands") appears as a whole word, in any case,
    outside quotes and code."""
    return bool(_mention_pattern(mention).search(spoken_text(markdown)))


def request_text(markdown: str, mention: str) -> str:
    """What was asked: the comment without the bot's mention (quotes and code kept,
    they are part of the request)."""
    without = _mention_pattern(mention).sub(" ", markdown)
    return re.sub(r"[ \t]{2,}", " ", without).strip()


def infer_repository(text: str, default: str | None = None) -> str | None:
    """The repository a request is about: a GitHub/GitLab URL, else an owner/name,
    else `default`. The case is kept as written (GitLab paths are case-sensitive)."""
    for match in _REPOSITORY_URL.finditer(text):
        segments = []
        for segment in match.group("path").split("/"):
            if segment in _URL_STOP_SEGMENTS:
                break
            segments.append(segment)
        if segments:
            # A URL at the end of a sentence keeps its full stop in the match.
            segments[-1] = segments[-1].rstrip(".").removesuffix(".git")
        if len(segments) >= 2:
            return "/".join(segments)
    for match in _REPOSITORY_NAME.finditer(_without_urls(text)):
        candidate = match.group("path")
        owner, _, name = candidate.partition("/")
        if (
            candidate.lower() not in _NOT_REPOSITORIES
            and re.search(r"[A-Za-z]", owner)
            and re.search(r"[A-Za-z]", name)
        ):
            return candidate
    return default


def _without_urls(text: str) -> str:
    return re.sub(r"<?https?://\S+", " ", text)
