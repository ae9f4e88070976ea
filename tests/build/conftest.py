"""Build fixtures: a cache holding the busybox base image, and the CLI run in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.build.baseimage import make_busybox_image
from pipeline.build.cache import BuildCache
from pipeline.cli.main import main

BUSYBOX = "docker.io/library/busybox:latest"


@dataclass
class Berth:
    """Runs ``berth`` in-process against one cache directory."""

    cache_dir: Path
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def build(self, context: Path, *args: str) -> dict[str, Any]:
        code, out, err = self(
            "build", str(context), "--cache-dir", str(self.cache_dir), "--json", *args
        )
        assert code == 0, err
        result: dict[str, Any] = json.loads(out)
        return result

    def fail(self, context: Path, *args: str) -> str:
        code, _, err = self("build", str(context), "--cache-dir", str(self.cache_dir), *args)
        assert code == 1, err
        return err


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    make_busybox_image(BuildCache(root), Path("/bin/busybox"), BUSYBOX)
    return root


@pytest.fixture
def berth(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> Berth:
    return Berth(cache_dir, capsys)


def write_context(root: Path, dockerfile: str, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root
