"""Where things live under a registry root, and the few file operations storage relies on.

::

    ROOT/blobs/sha256/ab/abcdef…                      content, named by digest
    ROOT/repositories/NAME/_layers/sha256/HEX          link: NAME may use blob HEX
    ROOT/repositories/NAME/_manifests/revisions/sha256/HEX   link + media type (JSON)
    ROOT/repositories/NAME/_manifests/tags/TAG         the digest TAG points to
    ROOT/repositories/NAME/_referrers/sha256/SUBJECT/sha256-HEX   referrer descriptor
    ROOT/uploads/ID/{data,state.json}                  upload sessions
    ROOT/pins/sha256/HEX/QUOTED-NAME                   pins (JSON)
    ROOT/token.key                                     the token signing key

Repository components start with a letter or digit, so the ``_layers``/``_manifests``/
``_referrers`` directories can never collide with a nested repository. Names starting
with ``.`` are temporary files of atomic writes and are ignored by every listing.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import quote, unquote

from runners.oci.digest import Digest


class Layout:
    """The paths of one registry root (pure: computing a path touches nothing)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.repositories = root / "repositories"
        self.uploads = root / "uploads"
        self.pins = root / "pins"
        self.token_key = root / "token.key"

    def blob(self, digest: Digest) -> Path:
        return self.blobs / digest.algorithm / digest.hex[:2] / digest.hex

    def repository(self, name: str) -> Path:
        return self.repositories / name

    def layer_link(self, name: str, digest: Digest) -> Path:
        return self.repository(name) / "_layers" / digest.algorithm / digest.hex

    def revision(self, name: str, digest: Digest) -> Path:
        return self.repository(name) / "_manifests" / "revisions" / digest.algorithm / digest.hex

    def revisions(self, name: str) -> Path:
        return self.repository(name) / "_manifests" / "revisions"

    def tags(self, name: str) -> Path:
        return self.repository(name) / "_manifests" / "tags"

    def referrers(self, name: str, subject: Digest) -> Path:
        return self.repository(name) / "_referrers" / subject.algorithm / subject.hex

    def referrer(self, name: str, subject: Digest, digest: Digest) -> Path:
        return self.referrers(name, subject) / f"{digest.algorithm}-{digest.hex}"

    def upload(self, upload_id: str) -> Path:
        return self.uploads / upload_id

    def pin(self, name: str, digest: Digest) -> Path:
        return self.pins / digest.algorithm / digest.hex / quote(name, safe="")

    @staticmethod
    def pin_repository(path: Path) -> str:
        return unquote(path.name)


def is_temporary(name: str) -> bool:
    """True for the in-flight files of :func:`write_atomic` (and anything hidden)."""
    return name.startswith(".")


def fsync_dir(path: Path) -> None:
    """Make a rename or creation in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mtime: float | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or all the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mtime is not None:
            os.utime(temp, (mtime, mtime))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def touch(path: Path, when: float) -> bool:
    """Set ``path``'s times to ``when``; ``False`` if it does not exist."""
    try:
        os.utime(path, (when, when))
    except FileNotFoundError:
        return False
    return True


def mtime(path: Path) -> float | None:
    """``path``'s modification time, ``None`` if it does not exist."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None
