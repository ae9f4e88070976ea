"""``.dockerignore`` patterns with Docker's rules.

Lines are patterns (``#`` starts a comment); ``!`` makes an exception. Patterns are
cleaned like paths and anchored at the context root; ``*`` and ``?`` stay within one
path component, ``**`` spans any number of them. A pattern that matches a directory
excludes everything below it. The *last* matching pattern decides, so order matters.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _Pattern:
    text: str
    regex: re.Pattern[str]
    exclusion: bool


class IgnoreRules:
    """Compiled ``.dockerignore`` patterns."""

    def __init__(self, lines: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            cleaned = posixpath.normpath(line).lstrip("/")
            if cleaned in ("", "."):
                continue
            self.patterns.append(_Pattern(cleaned, _compile(cleaned), exclusion))
        self.has_exceptions = any(p.exclusion for p in self.patterns)

    @classmethod
    def parse(cls, text: str) -> IgnoreRules:
        return cls(text.splitlines())

    def ignored(self, path: str) -> bool:
        """True when the context path ``path`` (``a/b/c``) is excluded."""
        parents = _parents(path)
        matched = False
        for pattern in self.patterns:
            if pattern.regex.match(path) or any(pattern.regex.match(p) for p in parents):
                matched = not pattern.exclusion
        return matched

    def may_reinclude(self, directory: str) -> bool:
        """True when an exception could bring back something below an excluded directory."""
        if not self.has_exceptions:
            return False
        prefix = directory + "/"
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            literal = re.split(r"[*?\[\\]", pattern.text, maxsplit=1)[0]
            if literal.startswith(prefix) or prefix.startswith(literal) or not literal:
                return True
        return False


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    # "**/" matches zero or more whole directories
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out))
