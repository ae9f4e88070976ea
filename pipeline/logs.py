"""Structured logging for the CLI, ``berth serve`` and ``berth agent``.

Log records carry their context as ``extra={"fields": {...}}``. The text format writes
``time level logger message key=value ...``; the JSON format writes one object per line.
A :class:`SecretFilter` masks every registered secret value wherever it appears, so a
secret that reaches a log line by mistake is never written out.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO

MASK = "******"


class SecretFilter(logging.Filter):
    """Replaces registered secret values in messages and fields with a mask."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def register(self, values: Iterable[str]) -> None:
        """Mask these values from now on (values shorter than 4 characters are ignored)."""
        with self._lock:
            self._secrets = self._secrets | {v for v in values if len(v) >= 4}

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg = self.mask(record.getMessage())
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: self.mask(str(v)) for k, v in fields.items()}
        return True


class TextFormatter(logging.Formatter):
    """``2026-01-01T00:00:00Z INFO  berth.build message key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        line = f"{stamp} {record.levelname:<5} {record.name} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message`` and fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update({k: v for k, v in fields.items() if k not in data})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, sort_keys=False)


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


# One filter for the process: the service registers its secrets once they are loaded.
secret_filter = SecretFilter()


def configure_logging(
    *, fmt: str = "text", verbosity: int = 0, debug: bool = False, stream: TextIO | None = None
) -> None:
    """Send berth's log records to ``stream`` (stderr) in the chosen format."""
    level = logging.WARNING
    if verbosity == 1:
        level = logging.INFO
    elif verbosity >= 2 or debug:
        level = logging.DEBUG
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(secret_filter)
    root = logging.getLogger("berth")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    """A logger below ``berth`` (``berth.registry``, ``berth.build`` ...)."""
    return logging.getLogger(f"berth.{name}")
