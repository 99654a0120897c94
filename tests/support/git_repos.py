"""Real bare git repositories for the fakes to serve, made with the git CLI.

`GitRepositories` keeps bare repositories under one root (a pytest tmp_path), one per
name: 'acme/api' is ``<root>/acme/api.git``. Commits are written with plumbing
(hash-object, a temporary index, commit-tree), so no work tree is ever checked out.
`make_large_repository` streams a big deterministic history into `git fast-import`.

Every git run here sees no system or global configuration (`git_env`), so a
developer's settings (commit signing, hooks, init.defaultBranch) change nothing.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from base64 import b64encode
from pathlib import Path
from typing import IO

# Commit times count up from here, one second a commit: shas are the same on every run.
EPOCH = 1_767_607_200  # 2026-01-05T10:00:00Z
# What partial clones need: a filter spec, and fetching any blob lazily by its sha.
REPOSITORY_CONFIG = {
    "uploadpack.allowFilter": "true",
    "uploadpack.allowAnySHA1InWant": "true",
    # Pushes are the server's to refuse (403), not the repository's.
    "http.receivepack": "true",
    # No `gc --auto` after a push, working on in the background while a test ends.
    "gc.auto": "0",
}


def git_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """An environment for git that reads no configuration but the repository's own
    (and ``home``/.gitconfig when a home is given) and never prompts."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "HOME": str(home) if home is not None else os.devnull,
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig") if home is not None else os.devnull,
    }
    env.update(extra)
    return env


def run_git(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
    strip: bool = True,
) -> str:
    """Run git; its stdout (stripped unless told not to). A failure raises with git's
    stderr in the message."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env if env is not None else git_env(),
        input=stdin,
        capture_output=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    out = done.stdout.decode(errors="replace")
    return out.strip() if strip else out


class GitClient:
    """The git CLI as a user runs it, with a home of its own (created here, with an
    identity in its .gitconfig): no other configuration, no prompts."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True)
        (home / ".gitconfig").write_text(
            "[user]\n\tname = Client\n\temail = client@example.test\n"
            "[init]\n\tdefaultBranch = main\n"
        )

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=git_env(self.home),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, cwd: Path | None = None) -> str:
        """git's stdout, stripped; a failure fails the test with git's stderr."""
        done = self.run(*args, cwd=cwd)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


class GitRepositories:
    """Bare repositories under one root directory (a pytest tmp_path), made with git."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._clock = EPOCH

    def path(self, name: str) -> Path:
        """The bare directory of ``name`` ('acme/api' -> <root>/acme/api.git)."""
        return self.root / f"{name}.git"

    def _git(
        self,
        name: str,
        *args: str,
        stdin: bytes = b"",
        strip: bool = True,
        env: dict[str, str] | None = None,
    ) -> str:
        git_dir = ("--git-dir", str(self.path(name)))
        return run_git(*git_dir, *args, env=git_env() | (env or {}), stdin=stdin, strip=strip)

    def init(self, name: str, *, default_branch: str = "main") -> Path:
        """An empty bare repository, configured for partial clones and pushes."""
        bare = self.path(name)
        bare.parent.mkdir(parents=True, exist_ok=True)
        run_git("init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(bare))
        for key, value in REPOSITORY_CONFIG.items():
            self._git(name, "config", key, value)
        return bare

    def create(
        self,
        name: str,
        files: dict[str, str],
        *,
        default_branch: str = "main",
        message: str = "Initial commit",
    ) -> Path:
        """A bare repository whose default branch has one commit holding ``files``."""
        bare = self.init(name, default_branch=default_branch)
        self.commit(name, default_branch, files, message)
        return bare

    def commit(
        self,
        name: str,
        branch: str,
        files: dict[str, str],
        message: str,
        *,
        parent_branch: str | None = None,
        author: tuple[str, str] = ("Test Author", "author@example.test"),
    ) -> str:
        """Commit ``files`` (path -> new content) on ``branch``; returns the new sha.

        A branch that does not exist yet starts at ``parent_branch`` (default: the
        repository's default branch; none at all for the first commit)."""
        current = self.branch_head(name, branch)
        parent = current or self.branch_head(name, parent_branch or self._default_branch(name))
        self._clock += 1
        date = f"{self._clock} +0000"
        identity = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1]}
        identity |= {"GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1]}
        identity |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        with tempfile.TemporaryDirectory() as scratch:
            # A scratch index: the parent's tree, the new blobs on top, written as a tree.
            index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            if parent is not None:
                self._git(name, "read-tree", parent, env=index)
            contents = [Path(scratch) / f"blob{number}" for number in range(len(files))]
            for content_file, content in zip(contents, files.values(), strict=True):
                content_file.write_text(content)
            listing = "".join(f"{content_file}\n" for content_file in contents)
            blobs = self._git(name, "hash-object", "-w", "--stdin-paths", stdin=listing.encode())
            entries = zip(blobs.split(), files, strict=True)
            info = "".join(f"100644 {blob}\t{path}\n" for blob, path in entries)
            self._git(name, "update-index", "--add", "--index-info", stdin=info.encode(), env=index)
            tree = self._git(name, "write-tree", env=index)
        parents = ["-p", parent] if parent is not None else []
        sha = self._git(name, "commit-tree", tree, *parents, "-m", message, env=identity)
        # The old value guards against a concurrent change of the branch.
        self._git(name, "update-ref", f"refs/heads/{branch}", sha, current or "")
        return sha

    def fork(self, source: str, name: str) -> Path:
        """A bare copy of ``source`` with all its refs, configured like the others."""
        bare = self.path(name)
        bare.parent.mkdir(parents=True, exist_ok=True)
        run_git("clone", "--quiet", "--mirror", str(self.path(source)), str(bare))
        self._git(name, "remote", "remove", "origin")
        for key, value in REPOSITORY_CONFIG.items():
            self._git(name, "config", key, value)
        return bare

    def set_ref(self, name: str, ref: str, sha: str) -> None:
        """Point ``ref`` (e.g. 'refs/pull/3/head') at ``sha``."""
        self._git(name, "update-ref", ref, sha)

    def branch_head(self, name: str, branch: str) -> str | None:
        """The sha ``branch`` points at, or None when there is no such branch."""
        try:
            return self._git(name, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        except RuntimeError:
            return None

    def branches(self, name: str) -> list[str]:
        listing = self._git(name, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/")
        return listing.splitlines()

    def commits(self, name: str, base: str, head: str) -> list[dict[str, str]]:
        """The commits in ``head`` not in ``base`` (branch names or shas), oldest first."""
        fields = "%H%x1f%an%x1f%ae%x1f%B%x1e"
        log = self._git(
            name, "log", "--reverse", "--topo-order", f"--format={fields}", f"{base}..{head}", "--"
        )
        commits = []
        for record in filter(None, (entry.strip("\n") for entry in log.split("\x1e"))):
            sha, author_name, author_email, message = record.split("\x1f")
            commits.append(
                {
                    "sha": sha,
                    "message": message.strip(),
                    "author_name": author_name,
                    "author_email": author_email,
                }
            )
        return commits

    def diffstat(self, name: str, base: str, head: str) -> tuple[int, int, int]:
        """(additions, deletions, files) from the merge base of ``base`` and ``head`` to
        ``head``, as GitHub's compare counts them (binary files count as changed only)."""
        numstat = self._git(name, "diff", "--numstat", f"{base}...{head}", "--")
        additions = deletions = changed = 0
        for line in numstat.splitlines():
            added, deleted, _ = line.split("\t", 2)
            additions += int(added) if added != "-" else 0
            deletions += int(deleted) if deleted != "-" else 0
            changed += 1
        return additions, deletions, changed

    def file_at(self, name: str, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref``, or None when it is not there."""
        try:
            return self._git(name, "cat-file", "blob", f"{ref}:{path}", strip=False)
        except RuntimeError:
            return None

    def _default_branch(self, name: str) -> str:
        return self._git(name, "symbolic-ref", "--short", "HEAD")


def make_large_repository(
    repositories: GitRepositories,
    name: str,
    *,
    files: int = 5000,
    history_bytes: int = 50 * 1024 * 1024,
    commits: int = 200,
    seed: int = 1,
) -> Path:
    """A deterministic repository with ``files`` files at its head and about
    ``history_bytes`` of blob content over ``commits`` commits on 'main'.

    The first commit adds every file; each later one rewrites 2% of them. Contents are
    base64 of random bytes, so they compress only to about three quarters. Built with
    one `git fast-import` run and never repacked (the served clone reuses its pack).
    At full size (5000 files, 50 MiB over 200 commits: a 41 MiB pack) the build took
    6.1 and 8.6 s on a shared 2-core machine (load about 2); a full clone of the result
    through `serve_git` took 2.5 s, a --filter=blob:none clone 1.3 s.
    """
    bare = repositories.init(name)
    rewritten = max(1, files // 50)
    blob_size = max(16, history_bytes // (files + (commits - 1) * rewritten))
    paths = [f"src/module{index // 100:03d}/file{index:05d}.txt" for index in range(files)]
    importer = subprocess.Popen(
        ["git", "--git-dir", str(bare), "fast-import", "--quiet"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=git_env(),
    )
    assert importer.stdin is not None
    try:
        _import_history(importer.stdin, paths, commits, rewritten, blob_size, seed)
    except BrokenPipeError:
        pass  # fast-import stopped early: its stderr says why
    _, errors = importer.communicate()
    if importer.returncode != 0:
        raise RuntimeError(f"git fast-import failed: {errors.decode(errors='replace')}")
    return bare


def _import_history(
    stream: IO[bytes], paths: list[str], commits: int, rewritten: int, blob_size: int, seed: int
) -> None:
    """make_large_repository's history as fast-import commands, one commit after another."""
    generator = random.Random(seed)
    for number in range(commits):
        changed = paths if number == 0 else generator.sample(paths, rewritten)
        message = f"Change {number + 1} of {commits}\n".encode()
        header = [
            b"commit refs/heads/main",
            f"committer Bench <bench@example.test> {EPOCH + number} +0000".encode(),
            b"data %d" % len(message),
        ]
        stream.write(b"\n".join(header) + b"\n" + message)
        for path in sorted(changed):
            content = b64encode(generator.randbytes((blob_size - 1) // 4 * 3)) + b"\n"
            stream.write(
                b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content)
            )
        stream.write(b"\n")
