"""COPY/ADD paths without RUN: archives, heredocs, .dockerignore, --from=image, owners, ARG/ENV.

Each build writes an OCI layout; the assertions read the exact tar entries of the layer
a step made (names, bytes, modes, owners), not an unpacked copy.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from pathlib import Path

import pytest

from tests.build.conftest import Berth, write_context
from tests.build.layers import (
    Member,
    config_of,
    dir_member,
    file_member,
    layer_members,
    manifest_of,
)

pytestmark = pytest.mark.unit

BUSYBOX_BINARY = Path("/bin/busybox")


def _archive(compression: str) -> bytes:
    """A tar (compressed with ``compression``: "", "gz", "bz2" or "xz") of a small tree."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(info: tarfile.TarInfo, data: bytes = b"") -> None:
            info.size = len(data)
            info.mtime = 1_000_000
            tar.addfile(info, io.BytesIO(data) if data else None)

        top = tarfile.TarInfo("pkg")
        top.type, top.mode, top.uid, top.gid = tarfile.DIRTYPE, 0o750, 10, 20
        add(top)
        tool = tarfile.TarInfo("pkg/bin/tool")  # its parent has no entry of its own
        tool.mode, tool.uid, tool.gid = 0o755, 10, 20
        add(tool, f"#!/bin/sh\necho {compression or 'plain'}\n".encode())
        readme = tarfile.TarInfo("./pkg/README")
        readme.mode = 0o600
        add(readme, b"read me\n")
        link = tarfile.TarInfo("pkg/run")
        link.type, link.linkname = tarfile.SYMTYPE, "bin/tool"
        add(link)
        hard = tarfile.TarInfo("pkg/README.hard")
        hard.type, hard.linkname, hard.mode = tarfile.LNKTYPE, "pkg/README", 0o600
        add(hard)
    raw = buffer.getvalue()
    if compression == "gz":
        return gzip.compress(raw, mtime=0)
    if compression == "bz2":
        return bz2.compress(raw)
    if compression == "xz":
        return lzma.compress(raw)
    return raw


def _archive_members(prefix: str, compression: str) -> dict[str, Member]:
    tool = f"#!/bin/sh\necho {compression or 'plain'}\n".encode()
    return {
        f"{prefix}/pkg": dir_member(0o750, 10, 20),
        f"{prefix}/pkg/bin": dir_member(),
        f"{prefix}/pkg/bin/tool": file_member(tool, 0o755, 10, 20),
        f"{prefix}/pkg/README": file_member(b"read me\n", 0o600),
        f"{prefix}/pkg/run": Member("symlink", 0o777, 0, 0, "bin/tool"),
        f"{prefix}/pkg/README.hard": Member("hardlink", 0o600, 0, 0, f"{prefix}/pkg/README"),
    }


def test_add_extracts_local_tar_archives_plain_gzip_bzip2_and_xz(
    berth: Berth, tmp_path: Path
) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM scratch\n"
        "ADD plain.tar /plain/\n"
        "ADD app.tar.gz /gz\n"
        "ADD app.tbz /bz2/\n"
        "ADD app.txz /xz/\n",
        {
            "plain.tar": _archive(""),
            "app.tar.gz": _archive("gz"),
            "app.tbz": _archive("bz2"),
            "app.txz": _archive("xz"),
        },
    )
    layout = tmp_path / "out"
    berth.build(context, "--output", f"oci:{layout}:t")
    for index, (prefix, compression) in enumerate(
        [("plain", ""), ("gz", "gz"), ("bz2", "bz2"), ("xz", "xz")]
    ):
        members = layer_members(layout, "t", index)
        expected = {prefix: dir_member(), **_archive_members(prefix, compression)}
        assert members == expected, prefix


def test_add_copies_files_that_are_not_tar_archives(berth: Berth, tmp_path: Path) -> None:
    compressed = gzip.compress(b"not a tar, only gzip\n", mtime=0)
    context = write_context(
        tmp_path / "ctx",
        "FROM scratch\nADD notes.txt /docs/\nADD data.gz /data.gz\n",
        {"notes.txt": "plain notes\n", "data.gz": compressed},
    )
    os.chmod(context / "notes.txt", 0o640)
    layout = tmp_path / "out"
    berth.build(context, "--output", f"oci:{layout}:t")
    assert layer_members(layout, "t", 0) == {
        "docs": dir_member(),
        "docs/notes.txt": file_member(b"plain notes\n", 0o640),
    }
    assert layer_members(layout, "t", 1) == {"data.gz": file_member(compressed, 0o644)}


def test_copy_heredocs_become_files(berth: Berth, tmp_path: Path) -> None:
    dockerfile = (
        "FROM scratch\n"
        "ARG WHO=world\n"
        "COPY <<EOF /etc/greeting\n"
        "hello ${WHO}\n"
        "  second line with 'quotes' and \"double\" \\$WHO\n"
        "EOF\n"
        "COPY --chmod=0755 <<run.sh <<'notes.txt' /opt/\n"
        "#!/bin/sh\n"
        "echo $WHO\n"
        "run.sh\n"
        "literal ${WHO}\n"
        "notes.txt\n"
        "COPY <<-EOT /indented\n"
        "\tno tab ${WHO}\n"
        "\t\tboth tabs go\n"
        "EOT\n"
    )
    context = write_context(tmp_path / "ctx", dockerfile, {})
    layout = tmp_path / "out"
    berth.build(context, "--output", f"oci:{layout}:t", "--build-arg", "WHO=berth")
    assert layer_members(layout, "t", 0) == {
        "etc": dir_member(),
        "etc/greeting": file_member(
            b"hello berth\n  second line with 'quotes' and \"double\" \\$WHO\n"
        ),
    }
    # an unquoted delimiter expands variables; a quoted one keeps the text as written
    assert layer_members(layout, "t", 1) == {
        "opt": dir_member(),
        "opt/run.sh": file_member(b"#!/bin/sh\necho berth\n", 0o755),
        "opt/notes.txt": file_member(b"literal ${WHO}\n", 0o755),
    }
    # <<- strips leading tabs, as the shell does
    assert layer_members(layout, "t", 2) == {
        "indented": file_member(b"no tab berth\nboth tabs go\n")
    }


def test_changed_heredoc_content_or_variable_rebuilds_the_step(
    berth: Berth, tmp_path: Path
) -> None:
    template = "FROM scratch\nARG WHO=a\nCOPY <<EOF /greeting\n{body}\nEOF\nCOPY f /f\n"
    context = write_context(tmp_path / "ctx", template.format(body="hello $WHO"), {"f": "f\n"})
    first = berth.build(context, "--output", f"oci:{tmp_path / 'one'}:t")
    assert layer_members(tmp_path / "one", "t", 0)["greeting"].data == b"hello a\n"
    assert [s["state"] for s in berth.build(context)["steps"]] == ["cached", "cached"]
    other_arg = berth.build(
        context, "--build-arg", "WHO=b", "--output", f"oci:{tmp_path / 'two'}:t"
    )
    assert [s["state"] for s in other_arg["steps"]] == ["built", "built"]
    assert layer_members(tmp_path / "two", "t", 0)["greeting"].data == b"hello b\n"
    (context / "Dockerfile").write_text(template.format(body="goodbye $WHO"))
    other_body = berth.build(context, "--output", f"oci:{tmp_path / 'three'}:t")
    assert [s["state"] for s in other_body["steps"]] == ["built", "built"]
    assert layer_members(tmp_path / "three", "t", 0)["greeting"].data == b"goodbye a\n"
    assert len({first["digest"], other_arg["digest"], other_body["digest"]}) == 3


DOCKERIGNORE = """\
# logs everywhere, except the ones under keep/
**/*.log
!keep/*.log
build
!build/keep.txt
docs/*.md
!docs/README.md
# a later pattern wins over an earlier exception
docs/README*
secrets/
"""

IGNORE_FILES: dict[str, str | bytes] = {
    ".dockerignore": DOCKERIGNORE,
    "app.py": "print('app')\n",
    "top.log": "top log\n",
    "sub/deep/trace.log": "trace\n",
    "sub/deep/code.py": "code\n",
    "keep/kept.log": "kept\n",
    "build/out.o": "object\n",
    "build/keep.txt": "keep me\n",
    "docs/guide.md": "guide\n",
    "docs/README.md": "readme\n",
    "docs/notes.txt": "notes\n",
    "secrets/key": "hunter2\n",
}


def test_dockerignore_patterns_exceptions_and_order_decide_what_is_copied(
    berth: Berth, tmp_path: Path
) -> None:
    context = write_context(tmp_path / "ctx", "FROM scratch\nCOPY . /app/\n", IGNORE_FILES)
    layout = tmp_path / "out"
    berth.build(context, "--output", f"oci:{layout}:t")
    members = layer_members(layout, "t", 0)
    files = {name: m.data.decode() for name, m in members.items() if m.kind == "file"}
    assert files == {
        "app/.dockerignore": DOCKERIGNORE,
        "app/Dockerfile": "FROM scratch\nCOPY . /app/\n",
        "app/app.py": "print('app')\n",
        "app/sub/deep/code.py": "code\n",
        "app/keep/kept.log": "kept\n",
        "app/build/keep.txt": "keep me\n",
        "app/docs/notes.txt": "notes\n",
    }
    dirs = sorted(name for name, m in members.items() if m.kind == "dir")
    assert dirs == ["app", "app/build", "app/docs", "app/keep", "app/sub", "app/sub/deep"]


def test_changing_an_ignored_file_rebuilds_nothing(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx", "FROM busybox\nCOPY . /app/\nCOPY app.py /app.py\n", IGNORE_FILES
    )
    first = berth.build(context)
    (context / "top.log").write_text("a different log\n")
    (context / "sub" / "deep" / "new.log").write_text("a new log file\n")
    (context / "secrets" / "key").write_text("rotated\n")
    (context / "docs" / "README.md").write_text("re-excluded by the last pattern\n")
    again = berth.build(context)
    assert [s["state"] for s in again["steps"]] == ["cached", "cached"]
    assert again["digest"] == first["digest"]
    (context / "keep" / "kept.log").write_text("an exception: this one counts\n")
    changed = berth.build(context)
    assert [s["state"] for s in changed["steps"]] == ["built", "built"]
    assert changed["digest"] != first["digest"]


def test_copy_of_an_ignored_file_names_the_line(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx", "FROM scratch\nCOPY app.py /\nCOPY secrets/key /key\n", IGNORE_FILES
    )
    err = berth.fail(context)
    assert "Dockerfile:3" in err
    assert "secrets/key: not found in the build context (or excluded by .dockerignore)" in err


def test_copy_from_an_image_in_the_local_store(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM scratch\n"
        "COPY --from=busybox /bin/busybox /bin/sh /tools/\n"
        "COPY --from=docker.io/library/busybox:latest --chown=7:8 /etc/passwd /etc/users\n",
        {},
    )
    layout = tmp_path / "out"
    berth.build(context, "--output", f"oci:{layout}:t")
    assert layer_members(layout, "t", 0) == {
        "tools": dir_member(),
        "tools/busybox": file_member(BUSYBOX_BINARY.read_bytes(), 0o755),
        "tools/sh": Member("symlink", 0o777, 0, 0, "busybox"),  # copied as a link
    }
    users = layer_members(layout, "t", 1)["etc/users"]
    assert users.data.startswith(b"root:x:0:0:")
    assert (users.mode, users.uid, users.gid) == (0o644, 7, 8)


def test_chown_and_chmod_on_copy_and_add(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM busybox\n"
        "ARG OWNER=1234\n"
        "COPY --chown=nobody:nogroup --chmod=0600 f /copy/f\n"
        "ADD --chown=${OWNER}:5678 --chmod=750 f /add/f\n"
        "ADD --chown=nobody dir /add/dir/\n"
        "COPY --chmod=0555 dir/ /ro/\n",
        {"f": "content\n", "dir/a.txt": "a\n", "dir/sub/b.txt": "b\n"},
    )
    os.chmod(context / "dir" / "a.txt", 0o664)
    layout = tmp_path / "out"
    berth.build(context, "--output", f"oci:{layout}:t")
    assert layer_members(layout, "t", 1) == {
        "copy": dir_member(),
        "copy/f": file_member(b"content\n", 0o600, 65534, 65534),
    }
    assert layer_members(layout, "t", 2) == {
        "add": dir_member(),
        "add/f": file_member(b"content\n", 0o750, 1234, 5678),
    }
    # --chown applies to every copied entry; the created parent stays root's
    assert layer_members(layout, "t", 3) == {
        "add": dir_member(),
        "add/dir": dir_member(0o755, 65534, 65534),
        "add/dir/a.txt": file_member(b"a\n", 0o664, 65534, 65534),
        "add/dir/sub": dir_member(0o755, 65534, 65534),
        "add/dir/sub/b.txt": file_member(b"b\n", 0o644, 65534, 65534),
    }
    assert layer_members(layout, "t", 4) == {
        "ro": dir_member(0o555),
        "ro/a.txt": file_member(b"a\n", 0o555),
        "ro/sub": dir_member(0o555),
        "ro/sub/b.txt": file_member(b"b\n", 0o555),
    }


def test_chown_to_an_unknown_user_names_the_line(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx", "FROM busybox\nADD --chown=nosuchuser f /f\n", {"f": "x\n"}
    )
    err = berth.fail(context)
    assert "Dockerfile:2" in err
    assert "nosuchuser" in err


def test_arg_before_from_picks_the_base_and_needs_redeclaring_in_the_stage(
    berth: Berth, tmp_path: Path
) -> None:
    context = write_context(
        tmp_path / "ctx",
        "ARG BASE=scratch\n"
        "ARG FLAVOR=plain\n"
        "FROM ${BASE}\n"
        "ARG FLAVOR\n"
        "COPY f /from-${FLAVOR}/f\n"
        "COPY f /base-${BASE}x\n",
        {"f": "f\n"},
    )
    scratch_layout = tmp_path / "scratch"
    berth.build(context, "--output", f"oci:{scratch_layout}:t")
    assert len(manifest_of(scratch_layout, "t")["layers"]) == 2
    assert set(layer_members(scratch_layout, "t", 0)) == {"from-plain", "from-plain/f"}
    # BASE is declared before FROM only: inside the stage it is unset
    assert set(layer_members(scratch_layout, "t", 1)) == {"base-x"}

    busybox_layout = tmp_path / "busybox"
    berth.build(
        context,
        "--output",
        f"oci:{busybox_layout}:t",
        "--build-arg",
        "BASE=busybox",
        "--build-arg",
        "FLAVOR=spicy",
    )
    manifest = manifest_of(busybox_layout, "t")
    assert len(manifest["layers"]) == 3
    assert "bin/busybox" in layer_members(busybox_layout, "t", 0)
    assert set(layer_members(busybox_layout, "t", 1)) == {"from-spicy", "from-spicy/f"}
    assert set(layer_members(busybox_layout, "t", 2)) == {"base-x"}


def test_env_expands_in_workdir_and_copy_destinations(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM busybox\n"
        "ENV APP=/srv/app NAME=web\n"
        "WORKDIR $APP\n"
        "WORKDIR ${NAME}/data\n"
        "COPY f conf/\n"
        "COPY f ${APP}/${NAME:-unset}.txt\n"
        "ENV NAME=api\n"
        "COPY f $APP/$NAME.txt\n"
        "COPY f /literal/\\$NAME\n"
        "COPY f /default/${MISSING:-fallback}\n",
        {"f": "f\n"},
    )
    layout = tmp_path / "out"
    berth.build(context, "--output", f"oci:{layout}:t")
    assert config_of(layout, "t")["config"]["WorkingDir"] == "/srv/app/web/data"

    def files(index: int) -> list[str]:
        members = layer_members(layout, "t", index)
        return sorted(name for name, m in members.items() if m.kind == "file")

    assert files(1) == ["srv/app/web/data/conf/f"]
    assert files(2) == ["srv/app/web.txt"]
    assert files(3) == ["srv/app/api.txt"]
    assert files(4) == ["literal/$NAME"]
    assert files(5) == ["default/fallback"]
