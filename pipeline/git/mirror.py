"""A bare mirror of one app's repository, kept in the data directory and updated by fetch.

Builds never clone: the mirror is fetched (only what is new), the commit's tree is
written to a build directory through a private index file (``read-tree`` +
``checkout-index``, no working tree, no ``HEAD`` change), and single files such as
``berth.yml`` are read straight from the object database. Polls ask the remote with
``ls-remote`` first and fetch only when the branch moved.

All git commands of one mirror are serialised by a lock: a poll and a build may
share it from different threads.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import git

from pipeline.errors import BerthError
from pipeline.git.remote import GitRemote

_GIT_TIMEOUT = 600.0


class GitError(BerthError):
    """A git operation on an app's repository failed (fetch, ls-remote, export)."""


@dataclass(frozen=True)
class CommitInfo:
    """The facts of one commit a release records."""

    sha: str
    author: str
    message: str
    committed_at: int
    """Committer time, seconds since the epoch: the build's SOURCE_DATE_EPOCH."""


class GitMirror:
    """The bare mirror of ``remote`` at ``path``; created on first fetch."""

    def __init__(self, path: Path, remote: GitRemote) -> None:
        self.path = path
        self.remote = remote
        self._lock = threading.Lock()

    # --- asking the remote ---------------------------------------------------------

    def remote_head(self, branch: str) -> str | None:
        """The commit ``branch`` points at on the remote, None if there is no such branch.

        Only the ref advertisement is read (``ls-remote``); nothing is downloaded.
        """
        ref = f"refs/heads/{branch}"
        out = self._run(git.cmd.Git(), "ls_remote", self.remote.url, ref, what="ls-remote")
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        return None

    def fetch(self) -> None:
        """Create the mirror if needed and bring every branch up to date."""
        with self._lock:
            repo = self._open(create=True)
            assert repo is not None
            self._run(
                repo.git,
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                self.remote.url,
                "+refs/heads/*:refs/heads/*",
                what="fetch",
            )

    def ensure_commit(self, sha: str) -> None:
        """Make sure ``sha`` is in the mirror, fetching once if it is not yet."""
        if self.has_commit(sha):
            return
        self.fetch()
        if not self.has_commit(sha):
            raise GitError(
                f"commit {sha[:12]} is not in {self.remote.display()} after a fetch: it may "
                "have been force-pushed away; push it again or trigger a newer commit"
            )

    # --- reading the mirror --------------------------------------------------------

    def has_commit(self, sha: str) -> bool:
        """True when the mirror holds commit ``sha``."""
        with self._lock:
            repo = self._open(create=False)
            if repo is None:
                return False
            try:
                repo.git.cat_file("-e", f"{sha}^{{commit}}")
            except git.GitCommandError:
                return False
            return True

    def branch_head(self, branch: str) -> str | None:
        """The commit ``branch`` points at in the mirror (as of the last fetch)."""
        with self._lock:
            repo = self._open(create=False)
            if repo is None:
                return None
            try:
                return str(repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{branch}"))
            except git.GitCommandError:
                return None

    def commit_info(self, sha: str) -> CommitInfo:
        """Author, message and commit time of ``sha``."""
        with self._lock:
            repo = self._require()
            try:
                commit = repo.commit(sha)
            except (ValueError, git.BadName, git.BadObject) as exc:
                raise GitError(f"{self.remote.display()}: no commit {sha[:12]}") from exc
            author = f"{commit.author.name} <{commit.author.email}>"
            message = commit.message if isinstance(commit.message, str) else commit.message.decode()
            return CommitInfo(sha, author, message.strip(), int(commit.committed_date))

    def read_file(self, sha: str, path: str) -> bytes | None:
        """The content of ``path`` at commit ``sha``, None if the commit has no such file."""
        with self._lock:
            repo = self._require()
            try:
                blob = repo.commit(sha).tree / path
            except KeyError:
                return None
            if blob.type != "blob":
                return None
            data: bytes = blob.data_stream.read()
            return data

    def export(self, sha: str, destination: Path) -> None:
        """Write the tree of ``sha`` into ``destination`` (modes and symlinks kept).

        A private index file makes this safe next to other exports of the same mirror.
        """
        destination.mkdir(parents=True, exist_ok=True)
        with self._lock:
            repo = self._require()
            handle, index = tempfile.mkstemp(prefix="index-", dir=self.path)
            os.close(handle)
            os.unlink(index)  # git wants to create the index itself
            env = {"GIT_INDEX_FILE": index, "GIT_WORK_TREE": str(destination)}
            try:
                self._run(repo.git, "read_tree", sha, env=env, what=f"export of {sha[:12]}")
                self._run(
                    repo.git,
                    "checkout_index",
                    "--all",
                    "--force",
                    f"--prefix={destination}/",
                    env=env,
                    what=f"export of {sha[:12]}",
                )
            finally:
                if os.path.exists(index):
                    os.unlink(index)

    # --- plumbing ------------------------------------------------------------------

    def _open(self, *, create: bool) -> git.Repo | None:
        if (self.path / "HEAD").is_file():
            return git.Repo(self.path)
        if not create:
            return None
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            return git.Repo.init(self.path, bare=True)
        except git.GitCommandError as exc:
            raise GitError(f"cannot create the mirror {self.path}: {exc.stderr.strip()}") from exc

    def _require(self) -> git.Repo:
        repo = self._open(create=False)
        if repo is None:
            raise GitError(f"the mirror of {self.remote.display()} has not been fetched yet")
        return repo

    def _run(
        self,
        runner: git.cmd.Git,
        command: str,
        *args: str,
        what: str,
        env: dict[str, str] | None = None,
    ) -> str:
        try:
            out = getattr(runner, command)(
                *args,
                env={**os.environ, **self.remote.environment(), **(env or {})},
                kill_after_timeout=_GIT_TIMEOUT,
            )
        except git.GitCommandError as exc:
            stderr = str(exc.stderr or "").strip().replace("\n", " ")[-500:]
            raise GitError(
                f"git {what} of {self.remote.display()} failed (exit {exc.status}): {stderr}; "
                "check the app's repo URL, credentials and network"
            ) from exc
        return str(out)
