"""RUN heredocs and multi-stage COPY --from=<stage> with --target: real runc builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.build.conftest import Berth, write_context
from tests.build.layers import Member, dir_member, file_member, layer_members, manifest_of

pytestmark = pytest.mark.privileged


def test_run_heredocs_run_multi_line_scripts(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM busybox\n"
        "ENV GREETING=hi\n"
        "RUN <<EOF\n"
        "mkdir -p /out\n"
        'echo "$GREETING one" > /out/script\n'
        "echo two >> /out/script\n"
        "chmod 0640 /out/script\n"
        "EOF\n"
        "RUN cat > /out/fed <<DATA && chown 5:6 /out/fed\n"
        "line $GREETING\n"
        "  'kept' \"as is\"\n"
        "DATA\n",
        {},
    )
    layout = tmp_path / "out"
    result = berth.build(context, "--output", f"oci:{layout}:t")
    assert [s["state"] for s in result["steps"]] == ["config", "built", "built"]
    assert layer_members(layout, "t", 1) == {
        "out": dir_member(),
        "out/script": file_member(b"hi one\ntwo\n", 0o640),
    }
    assert layer_members(layout, "t", 2) == {
        "out": dir_member(),
        "out/fed": file_member(b"line hi\n  'kept' \"as is\"\n", 0o644, 5, 6),
    }


def test_failing_line_of_a_run_heredoc_fails_the_build(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM busybox\nRUN <<EOF\nset -e\necho started\nfalse\necho never > /never\nEOF\n",
        {},
    )
    err = berth.fail(context)
    assert "Dockerfile:2" in err
    assert "exited with 1" in err
    assert "started" in err
    assert not list((berth.cache_dir / "steps").glob("*.json"))


MULTI_STAGE = """\
FROM busybox AS base
RUN echo base > /base.txt
FROM base AS build
RUN mkdir /out && echo "built on $(cat /base.txt)" > /out/artifact && chmod 0600 /out/artifact
RUN ln -s artifact /out/latest
FROM scratch AS final
COPY --from=build --chown=3:4 /out/ /dist/
COPY --from=0 /base.txt /
FROM busybox AS broken
RUN exit 7
"""


def test_copy_from_a_stage_with_target(berth: Berth, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", MULTI_STAGE, {})
    layout = tmp_path / "out"
    # the last stage fails: --target final must not build it
    assert "Dockerfile:10" in berth.fail(context)
    final = berth.build(context, "--target", "final", "--output", f"oci:{layout}:final")
    assert {s["stage"] for s in final["steps"]} == {"base", "build", "final"}
    assert len(manifest_of(layout, "final")["layers"]) == 2
    assert layer_members(layout, "final", 0) == {
        "dist": dir_member(0o755, 3, 4),
        "dist/artifact": file_member(b"built on base\n", 0o600, 3, 4),
        "dist/latest": Member("symlink", 0o777, 3, 4, "artifact"),
    }
    assert layer_members(layout, "final", 1) == {"base.txt": file_member(b"base\n")}

    build = berth.build(context, "--target", "build", "--output", f"oci:{layout}:build")
    assert [s["state"] for s in build["steps"]] == ["cached"] * 3
    assert len(manifest_of(layout, "build")["layers"]) == 4  # busybox + three RUN layers
    assert layer_members(layout, "build", 3) == {
        "out": dir_member(),
        "out/latest": Member("symlink", 0o777, 0, 0, "artifact"),
    }
