"""Where an image is, written the way skopeo writes it.

``oci:DIR[:TAG]`` is an OCI layout directory, ``oci-archive:FILE[:TAG]`` an OCI archive,
``docker://REF`` (or a bare reference) an image in a registry. As in skopeo, the path
ends at the first ``:``, so paths with colons cannot be named this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from runners.errors import OCIError, ReferenceError_
from runners.oci.archive import OCIArchive
from runners.oci.layout import OCILayout
from runners.oci.reference import Reference, valid_tag


class LocalFormat(Enum):
    """The two on-disk image formats berth reads and writes."""

    LAYOUT = "oci"
    ARCHIVE = "oci-archive"


@dataclass(frozen=True)
class LocalImage:
    """An image on disk: an OCI layout directory or archive, and optionally a tag in it."""

    format: LocalFormat
    path: Path
    tag: str | None = None

    def open_source(self) -> OCILayout | OCIArchive:
        """Open for reading; raise :class:`OCIError` if it is missing or not OCI."""
        if self.format is LocalFormat.LAYOUT:
            return OCILayout.open(self.path)
        return OCIArchive.open(self.path)

    def __str__(self) -> str:
        text = f"{self.format.value}:{self.path}"
        return f"{text}:{self.tag}" if self.tag else text


def parse_location(text: str) -> LocalImage | Reference:
    """Parse ``oci:…``, ``oci-archive:…``, ``docker://…`` or a bare image reference."""
    for fmt in (LocalFormat.ARCHIVE, LocalFormat.LAYOUT):
        prefix = f"{fmt.value}:"
        if text.startswith(prefix):
            return _local(fmt, text[len(prefix) :], text)
    if text.startswith("docker://"):
        return Reference.parse(text[len("docker://") :])
    if text.split(":", 1)[0] in {"dir", "docker-archive", "docker-daemon", "containers-storage"}:
        raise OCIError(
            f"{text!r}: berth reads and writes oci:DIR[:TAG], oci-archive:FILE[:TAG] and "
            "docker://REF; convert other formats with skopeo copy"
        )
    try:
        return Reference.parse(text)
    except ReferenceError_ as exc:
        raise ReferenceError_(
            f"{exc} (expected an image reference, oci:DIR[:TAG] or oci-archive:FILE[:TAG])"
        ) from exc


def _local(fmt: LocalFormat, rest: str, original: str) -> LocalImage:
    path, _, tag = rest.partition(":")
    if not path:
        raise OCIError(f"{original!r}: missing path after {fmt.value}:")
    if tag and not valid_tag(tag):
        raise OCIError(f"{original!r}: invalid tag {tag!r}")
    return LocalImage(fmt, Path(path), tag or None)
