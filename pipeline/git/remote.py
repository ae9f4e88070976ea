"""Where an app's repository is: its URL, the credentials git needs, and URL matching.

Credentials never appear in argv (``ps`` shows it) nor in a file: HTTP(S) credentials go
to git as an ``http.extraHeader`` through ``GIT_CONFIG_*`` environment variables, an SSH
key through ``GIT_SSH_COMMAND``.
"""

from __future__ import annotations

import base64
import re
import shlex
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from pipeline.secrets import Secret

# git must never stop to ask a person for a password in a service.
_QUIET_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}


@dataclass(frozen=True)
class GitAuth:
    """Credentials for a remote: HTTP(S) basic auth, or an SSH private key file."""

    username: str | None = None
    password: Secret | None = None
    ssh_key: Path | None = None

    def environment(self) -> dict[str, str]:
        """Environment variables that hand these credentials to git."""
        env: dict[str, str] = {}
        if self.password is not None:
            pair = f"{self.username or 'git'}:{self.password.reveal()}".encode()
            env |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {base64.b64encode(pair).decode()}",
            }
        if self.ssh_key is not None:
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {shlex.quote(str(self.ssh_key))} -o IdentitiesOnly=yes -o BatchMode=yes"
            )
        return env


@dataclass(frozen=True)
class GitRemote:
    """An app's repository: a URL git understands (local path, file://, http(s), ssh)."""

    url: str
    auth: GitAuth | None = None

    @classmethod
    def local(cls, path: Path) -> GitRemote:
        """A repository on this machine (the ``path:`` of an app)."""
        return cls(str(path))

    def environment(self) -> dict[str, str]:
        """The environment every git command on this remote runs with."""
        return {**_QUIET_ENV, **(self.auth.environment() if self.auth else {})}

    def display(self) -> str:
        """The URL without any password in it, for messages."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = f"{parts.username}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


_SCP_LIKE = re.compile(r"(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)")


def normalize_repo_url(url: str) -> str:
    """A comparable key for a repository URL: ``host/path`` without scheme, user, port,
    ``.git`` suffix and trailing slash; ``file:/abs/path`` for local repositories.

    ``https://GitHub.com/Team/App.git``, ``git@github.com:Team/App`` and
    ``ssh://git@github.com:22/Team/App.git`` all become ``github.com/Team/App``.
    """
    text = url.strip()
    if text.startswith("/"):
        return "file:" + _trim(str(Path(text)))
    parts = urllib.parse.urlsplit(text)
    if parts.scheme == "file":
        return "file:" + _trim(str(Path(urllib.parse.unquote(parts.path))))
    if parts.scheme and parts.netloc:
        host = (parts.hostname or "").lower()
        return host + "/" + _trim(urllib.parse.unquote(parts.path).strip("/"))
    scp = _SCP_LIKE.fullmatch(text)
    if scp:
        return scp.group(1).lower() + "/" + _trim(scp.group(2).strip("/"))
    return _trim(text)


def _trim(path: str) -> str:
    path = path.rstrip("/")
    return path.removesuffix(".git").rstrip("/")
