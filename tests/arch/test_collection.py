"""Every directory of tests is collected by the plain ``pytest`` run CI makes.

pytest silently skips directories matching ``norecursedirs`` — its default list has
``build``, which once kept ``tests/build`` (the builder's tests) out of every CI run.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NORECURSEDIRS = ["*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}"]  # fmt: skip


def test_no_test_directory_is_left_out_of_collection() -> None:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    patterns = options["ini_options"].get("norecursedirs", DEFAULT_NORECURSEDIRS)
    with_tests = sorted(
        {path.parent for path in (ROOT / "tests").rglob("test_*.py")},
    )
    assert with_tests, "no test files found"
    skipped = [
        str(directory.relative_to(ROOT))
        for directory in with_tests
        for part in directory.relative_to(ROOT / "tests").parts
        if any(fnmatch.fnmatch(part, pattern) for pattern in patterns)
    ]
    assert skipped == [], f"pytest would not collect {skipped}; fix norecursedirs"
