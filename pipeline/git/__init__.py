"""Git for the control plane: a bare mirror per app, ls-remote polling, commit export.

- :mod:`~pipeline.git.remote` - where an app's repository is (URL, credentials) and how
  webhook payload URLs are matched to it
- :mod:`~pipeline.git.mirror` - :class:`GitMirror`: fetch, heads, commit facts, files at
  a commit, and a commit's tree exported without a checkout
"""

from __future__ import annotations

from pipeline.git.mirror import CommitInfo, GitError, GitMirror
from pipeline.git.remote import GitAuth, GitRemote, normalize_repo_url

__all__ = ["CommitInfo", "GitAuth", "GitError", "GitMirror", "GitRemote", "normalize_repo_url"]
