"""The bare mirror: ls-remote without fetching, export without checkout, files at a commit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.git import GitError, GitMirror, GitRemote
from tests.helpers.gitrepo import GitRepo, git

pytestmark = pytest.mark.integration


def test_export_keeps_modes_and_links_and_reads_the_commit(
    tmp_path: Path, git_repo: GitRepo
) -> None:
    first = git_repo.commit(
        {"berth.yml": "run: {port: 1}\n", "bin/run.sh": "#!/bin/sh\n", "a/b.txt": "b\n"},
        "first",
        date="2024-01-02T03:04:05Z",
    )
    os.chmod(git_repo.work / "bin/run.sh", 0o755)  # noqa: S103 - an executable script
    os.symlink("a/b.txt", git_repo.work / "link")
    second = git_repo.commit({}, "second\n\nbody")
    mirror = GitMirror(tmp_path / "mirror.git", GitRemote(git_repo.url))
    assert mirror.remote_head("main") == second
    assert not (tmp_path / "mirror.git").exists(), "ls-remote must not create or fetch"
    assert mirror.remote_head("nope") is None
    mirror.ensure_commit(first)
    assert mirror.branch_head("main") == second
    info = mirror.commit_info(first)
    assert info.committed_at == 1704164645
    assert info.author == "Test Author <author@example.test>"
    assert mirror.commit_info(second).message == "second\n\nbody"
    assert mirror.read_file(first, "berth.yml") == b"run: {port: 1}\n"
    assert mirror.read_file(first, "missing.yml") is None
    out = tmp_path / "export"
    mirror.export(second, out)
    assert (out / "a/b.txt").read_text() == "b\n"
    assert os.stat(out / "bin/run.sh").st_mode & 0o111
    assert os.readlink(out / "link") == "a/b.txt"
    assert not (out / ".git").exists()
    assert git(tmp_path / "mirror.git", "rev-parse", "--is-bare-repository") == "true"


def test_a_missing_commit_and_an_unreachable_remote_are_named(
    tmp_path: Path, git_repo: GitRepo
) -> None:
    git_repo.commit({"x": "1"})
    mirror = GitMirror(tmp_path / "m.git", GitRemote(git_repo.url))
    with pytest.raises(GitError, match="not in"):
        mirror.ensure_commit("f" * 40)
    gone = GitMirror(tmp_path / "n.git", GitRemote((tmp_path / "nowhere.git").as_uri()))
    with pytest.raises(GitError, match="ls-remote of file://"):
        gone.remote_head("main")
