"""Thread and issue text as the agent is shown it: data, with what hides text from a
human reader taken out.

Issue and comment text reaches the agent's prompt, and anyone who can comment can
write there. What a reader of the thread cannot see must not reach the agent either:
HTML comments and hidden elements (which GitHub and GitLab do not render),
zero-width characters, and the bidirectional controls that make text read
differently from how it is stored. Only the request of the person who mentioned the
bot is the task; the agent is told so (agent.instructions.CONTEXT_IS_DATA).
"""

from __future__ import annotations

import re

# Unterminated too: GitHub hides everything after an opening "<!--".
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
# An element its author hid: a `hidden` attribute, or a style that hides it.
_HIDDEN_ELEMENT = re.compile(
    r"<(?P<tag>[a-zA-Z][\w-]*)\b[^>]*?"
    r"(?:\shidden(?=[\s=>/])|style\s*=\s*[\"'][^\"']*"
    r"(?:display\s*:\s*none|visibility\s*:\s*hidden)[^\"']*[\"'])"
    r"[^>]*>.*?</(?P=tag)\s*>",
    re.S | re.I,
)
# Zero-width and invisible formatting characters, and the bidirectional controls
# (embeddings, overrides, isolates and marks).
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u061c]"
)


def visible_text(text: str, *, markup: bool = True) -> str:
    """`text` as a reader of the thread sees it; `markup=False` for text no HTML is
    rendered in (Slack's), where only invisible characters hide anything."""
    if markup:
        text = _HIDDEN_ELEMENT.sub("", _HTML_COMMENT.sub("", text))
    return _INVISIBLE.sub("", text)
