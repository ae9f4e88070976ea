"""Users and bcrypt password hashes from an htpasswd file (``htpasswd -B``).

Apache's ``htpasswd -B`` writes ``$2y$`` hashes; the ``bcrypt`` library verifies the
identical ``$2b$`` variant, so the prefix is rewritten on load. Other hash schemes
(MD5, SHA-1, crypt) are refused: they are too weak to guard pushes.

bcrypt is slow on purpose and clients authenticate every request, so successful
verifications are remembered for a minute (keyed by a SHA-256 of the password, never
the password itself). The file is re-read when it changes, so users can be added
without restarting the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from pathlib import Path

import bcrypt

from pipeline.errors import ConfigError, ConfigProblem

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
CACHE_SECONDS = 60.0


def parse_htpasswd(text: str, source: str = "<htpasswd>") -> dict[str, bytes]:
    """``user -> bcrypt hash`` from htpasswd lines; every bad line is reported at once."""
    entries: dict[str, bytes] = {}
    problems: list[ConfigProblem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            problems.append(ConfigProblem(source, "", "expected USER:HASH", number))
            continue
        if not hashed.startswith(_BCRYPT_PREFIXES):
            problems.append(
                ConfigProblem(
                    source,
                    user,
                    "only bcrypt hashes are accepted; recreate the entry with `htpasswd -B`",
                    number,
                )
            )
            continue
        if hashed.startswith("$2y$"):
            hashed = "$2b$" + hashed[4:]
        entries[user] = hashed.encode()
    if problems:
        raise ConfigError(problems)
    return entries


class Htpasswd:
    """Verifies user names and passwords against an htpasswd file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, bytes] = {}
        self._stamp: tuple[int, int] | None = None
        self._verified: dict[tuple[str, bytes], float] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            text = self.path.read_text()
        except OSError as exc:
            raise ConfigError(
                [ConfigProblem(str(self.path), "", f"cannot read htpasswd file: {exc.strerror}")]
            ) from exc
        entries = parse_htpasswd(text, str(self.path))
        with self._lock:
            self._entries = entries
            self._stamp = stamp
            self._verified.clear()

    @property
    def users(self) -> list[str]:
        return sorted(self._entries)

    def verify(self, user: str, password: str) -> bool:
        """True when ``password`` is ``user``'s (blocking: bcrypt takes milliseconds)."""
        # keep serving with the last good file while it is being rewritten
        with contextlib.suppress(ConfigError):
            self._reload()
        key = (user, hashlib.sha256(password.encode()).digest())
        now = time.monotonic()
        with self._lock:
            hashed = self._entries.get(user)
            if hashed is None:
                return False
            if self._verified.get(key, 0.0) > now:
                return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._verified[key] = now + CACHE_SECONDS
        return ok
