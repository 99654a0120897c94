"""Where each conversation works on the agent-server's disk.

Every conversation gets a directory of its own, `{root}/{conversation id}` and, when
it is about a repository, `{root}/{conversation id}/{repository name}`: the
agent-server uses `workspace.working_dir` exactly as given and creates it
(openhands-agent-server 1.58.2), so two conversations never share one, whichever
repositories they are about, and a follow-up turn, which continues the same
conversation, finds its files where it left them. A relative root resolves against
the agent-server's own working directory.
"""

from __future__ import annotations

import re

# What a directory name may hold of a repository's name; anything else becomes "-".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def repository_dir_name(repository: str) -> str | None:
    """The last segment of "owner/name" (or a GitLab "group/sub/name"), made safe as a
    directory name; None when nothing of it is left."""
    name = _UNSAFE.sub("-", repository.rstrip("/").rsplit("/", 1)[-1]).strip(".-")
    return name or None


def working_dir(root: str, conversation_id: str, repository: str | None = None) -> str:
    """The conversation's directory under `root`."""
    directory = f"{root.rstrip('/') or '/'}/{conversation_id}".replace("//", "/")
    name = repository_dir_name(repository) if repository else None
    return f"{directory}/{name}" if name else directory
