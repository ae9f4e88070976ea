"""Variable expansion in Dockerfile words, the way BuildKit's shell lexer does it.

``$NAME`` and ``${NAME}`` expand; ``${NAME:-word}``/``${NAME-word}`` give a default,
``${NAME:+word}``/``${NAME+word}`` an alternative and ``${NAME:?msg}``/``${NAME?msg}``
an error. Single quotes keep everything literal, double quotes keep spaces but expand
variables; the escape character (``\\`` or the ``# escape=`` directive's) escapes the
next character. Quotes are removed from the result, as Docker does.
"""

from __future__ import annotations

from collections.abc import Mapping


class ExpansionError(ValueError):
    """A ``${NAME?message}`` whose variable is unset, or a malformed ``${…}``."""


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``word`` with its variables expanded and quotes removed."""
    return _Lexer(word, env, escape).word()


def expand_heredoc(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """A heredoc body with its variables expanded; quotes and escapes stay as written.

    BuildKit expands an unquoted heredoc of COPY/ADD this way: the body is file content,
    not a word, so only ``$NAME``/``${…}`` change and an escaped ``\\$`` stays as it is.
    """
    return _Lexer(text, env, escape, raw=True).word()


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str, raw: bool = False) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw = raw

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def word(self, stop: str = "") -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch in stop:
                break
            if ch == self.escape:
                self.pos += 1
                if self.raw:
                    out.append(ch)
                if self.pos < len(self.text):
                    out.append(self.next())
                continue
            if self.raw and ch in "'\"":
                out.append(self.next())
                continue
            if ch == "'":
                self.pos += 1
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise ExpansionError(f"unterminated single quote in {self.text!r}")
                out.append(self.text[self.pos : end])
                self.pos = end + 1
                continue
            if ch == '"':
                self.pos += 1
                out.append(self._double_quoted())
                continue
            if ch == "$":
                out.append(self._variable())
                continue
            out.append(self.next())
        return "".join(out)

    def _double_quoted(self) -> str:
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError(f"unterminated double quote in {self.text!r}")
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == self.escape:
                self.pos += 1
                following = self.peek()
                if following in ('"', "$", self.escape):
                    out.append(self.next())
                else:
                    out.append(ch)
                continue
            if ch == "$":
                out.append(self._variable())
                continue
            out.append(self.next())

    def _variable(self) -> str:
        self.pos += 1  # the $
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            return self._braced()
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def _name(self) -> str:
        start = self.pos
        ch = self.peek()
        if ch and (ch.isdigit() or ch in "*#?@$!-"):
            # positional and special parameters are single characters; never set here
            self.pos += 1
            return self.text[start : self.pos]
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] == "_"
        ):
            self.pos += 1
        return self.text[start : self.pos]

    def _braced(self) -> str:
        name = self._name()
        if not name:
            raise ExpansionError(f"bad substitution in {self.text!r}")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise ExpansionError(f"unsupported modifier {ch!r} in ${{{name}…}} of {self.text!r}")
        operand = self.word(stop="}")
        if self.next() != "}":
            raise ExpansionError(f"missing '}}' in {self.text!r}")
        value = self.env.get(name)
        is_set = value is not None and (not colon or value != "")
        if ch == "-":
            return value if is_set and value is not None else operand
        if ch == "+":
            return operand if is_set else ""
        if not is_set:
            raise ExpansionError(f"{name}: {operand or 'is not set'}")
        return value or ""
