"""What GitLab's repository API answers, computed from a real bare repository.

The fake GitLab (tests/support/fake_gitlab.py) serves its projects' repositories from
`GitRepositories`; these functions give its `repository/branches`, `repository/commits`
and `repository/compare` answers the shape GitLab gives them, from what git says.
"""

from __future__ import annotations

from typing import Any

from tests.support.git_http import GitRepositories
from tests.support.git_repos import run_git

_FIELDS = "%H%x1f%P%x1f%an%x1f%ae%x1f%B"


def _git(repositories: GitRepositories, name: str, *args: str) -> str:
    return run_git("--git-dir", str(repositories.path(name)), *args)


def resolve(repositories: GitRepositories, name: str, ref: str) -> str | None:
    """The commit `ref` (a branch, a ref, a sha) names; None when it names none."""
    try:
        return _git(repositories, name, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except RuntimeError:
        return None


def commit_json(repositories: GitRepositories, name: str, sha: str, web_url: str) -> dict[str, Any]:
    """A commit as GitLab's API shows one."""
    fields = _git(repositories, name, "show", "--no-patch", f"--format={_FIELDS}", sha)
    commit_id, parents, author_name, author_email, message = fields.split("\x1f", 4)
    return {
        "id": commit_id,
        "short_id": commit_id[:8],
        "title": message.split("\n", 1)[0],
        "message": message,
        "author_name": author_name,
        "author_email": author_email,
        "parent_ids": parents.split(),
        "web_url": f"{web_url}/-/commit/{commit_id}",
    }


def branch_json(
    repositories: GitRepositories, name: str, branch: str, web_url: str, default_branch: str
) -> dict[str, Any] | None:
    """`GET /projects/:id/repository/branches/:branch`; None when there is no such branch."""
    sha = repositories.branch_head(name, branch)
    if sha is None:
        return None
    return {
        "name": branch,
        "commit": commit_json(repositories, name, sha, web_url),
        "merged": False,
        "protected": branch == default_branch,
        "default": branch == default_branch,
        "developers_can_push": False,
        "developers_can_merge": False,
        "can_push": True,
        "web_url": f"{web_url}/-/tree/{branch}",
    }


def compare_json(
    repositories: GitRepositories, name: str, base: str, head: str, web_url: str
) -> dict[str, Any] | None:
    """`GET /projects/:id/repository/compare?from=base&to=head&straight=false`: the
    commits of `head` not in `base`, and the changes since their merge base. None when
    `head` names no commit (GitLab's 404); a `base` that names none compares as empty,
    as GitLab's does."""
    head_sha = resolve(repositories, name, head)
    if head_sha is None:
        return None
    base_sha = resolve(repositories, name, base)
    if base_sha is None:
        commits: list[dict[str, Any]] = []
        diffs: list[dict[str, Any]] = []
    else:
        listed = repositories.commits(name, base_sha, head_sha)
        commits = [commit_json(repositories, name, c["sha"], web_url) for c in listed]
        diffs = _diffs(repositories, name, base_sha, head_sha)
    return {
        # GitLab names the newest of the listed commits, none when there are none.
        "commit": commits[-1] if commits else None,
        "commits": commits,
        "diffs": diffs,
        "compare_timeout": False,
        "compare_same_ref": base_sha == head_sha,
        "web_url": f"{web_url}/-/compare/{base}...{head}?straight=false",
    }


def _diffs(
    repositories: GitRepositories, name: str, base_sha: str, head_sha: str
) -> list[dict[str, Any]]:
    """Each changed file as GitLab lists it: its diff from the first `@@` on (GitLab
    gives no `---`/`+++` header lines)."""
    listing = _git(
        repositories, name, "diff", "--no-renames", "--name-status", f"{base_sha}...{head_sha}"
    )
    diffs = []
    for line in listing.splitlines():
        status, path = line.split("\t", 1)
        text = run_git(
            "--git-dir",
            str(repositories.path(name)),
            "diff",
            "--no-color",
            f"{base_sha}...{head_sha}",
            "--",
            path,
            strip=False,
        )
        hunks = text[text.find("\n@@") + 1 :] if "\n@@" in text else ""
        diffs.append(
            {
                "old_path": path,
                "new_path": path,
                "a_mode": "0" if status == "A" else "100644",
                "b_mode": "0" if status == "D" else "100644",
                "new_file": status == "A",
                "renamed_file": False,
                "deleted_file": status == "D",
                "diff": hunks,
            }
        )
    return diffs
