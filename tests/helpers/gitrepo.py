"""Real git repositories in a temp dir: a bare origin and a working clone that pushes to it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, **GIT_ENV, "HOME": str(cwd), **(env or {})}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout.strip()


@dataclass
class GitRepo:
    """A bare ``origin`` and a ``work`` clone; ``commit`` writes files and pushes."""

    origin: Path
    work: Path
    branch: str = "main"

    def commit(
        self,
        files: dict[str, str | bytes],
        message: str = "change",
        *,
        push: bool = True,
        date: str | None = None,
    ) -> str:
        for rel, content in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        git(self.work, "add", "-A")
        env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else None
        git(self.work, "commit", "-q", "-m", message, env=env)
        sha = git(self.work, "rev-parse", "HEAD")
        if push:
            git(self.work, "push", "-q", "origin", self.branch)
        return sha

    @property
    def url(self) -> str:
        return self.origin.as_uri()


def make_repo(root: Path, name: str = "app", branch: str = "main") -> GitRepo:
    origin = root / f"{name}.git"
    work = root / f"{name}-work"
    origin.mkdir(parents=True)
    git(origin, "init", "-q", "--bare", f"--initial-branch={branch}")
    work.mkdir()
    git(work, "init", "-q", f"--initial-branch={branch}")
    git(work, "remote", "add", "origin", str(origin))
    return GitRepo(origin=origin, work=work, branch=branch)
