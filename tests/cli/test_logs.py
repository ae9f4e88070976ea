"""Structured logging: text and JSON lines, and secrets never written."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pipeline.logs import MASK, configure_logging, get_logger, secret_filter

pytestmark = pytest.mark.unit


def test_json_lines_carry_fields() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", verbosity=1, stream=out)
    get_logger("test").info("build finished", extra={"fields": {"app": "shop", "ms": 12}})
    record = json.loads(out.getvalue().strip())
    assert record["message"] == "build finished"
    assert record["app"] == "shop"
    assert record["level"] == "info"
    assert record["logger"] == "berth.test"


def test_text_format_quotes_values_with_spaces() -> None:
    out = io.StringIO()
    configure_logging(fmt="text", verbosity=1, stream=out)
    get_logger("test").info("hello", extra={"fields": {"why": "two words", "n": 3}})
    line = out.getvalue().strip()
    assert line.endswith('hello why="two words" n=3')
    assert " INFO  berth.test " in line


def test_registered_secrets_are_masked_everywhere() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", verbosity=1, stream=out)
    secret_filter.register(["s3cr3t-value-123"])
    get_logger("test").info(
        "token is %s", "s3cr3t-value-123", extra={"fields": {"header": "Bearer s3cr3t-value-123"}}
    )
    text = out.getvalue()
    assert "s3cr3t-value-123" not in text
    record = json.loads(text.strip())
    assert record["message"] == f"token is {MASK}"
    assert record["header"] == f"Bearer {MASK}"


def test_default_level_hides_info() -> None:
    out = io.StringIO()
    configure_logging(fmt="text", stream=out)
    get_logger("test").info("quiet")
    get_logger("test").warning("loud")
    assert "quiet" not in out.getvalue()
    assert "loud" in out.getvalue()
    logging.getLogger("berth").handlers.clear()
