"""Garbage collection: a pure plan over an :class:`Inventory`, then its careful application.

What is kept (everything else older than the grace period goes):

- manifests a tag points to, pinned manifests, and manifests younger than the grace
  period (they may be about to be tagged, or be the children of an index being pushed);
- transitively: the child manifests of a kept index and the referrers (``subject``)
  of a kept manifest, in the same repository;
- blobs referenced by a kept manifest (config and layers) or that are a kept manifest,
  pinned blobs, and blobs younger than the grace period;
- a repository's link to a blob when the repository's kept manifests need it, when it is
  pinned in that repository, or when the link is younger than the grace period.

:func:`plan_gc` decides; :func:`apply_gc` deletes through the storage, which re-checks
each item's age (and, for manifests, that no tag points to it now) at the moment of
deletion, so that content pushed or tagged while GC runs is not removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runners.oci.digest import Digest

if TYPE_CHECKING:
    from pipeline.registry.storage import Pin, RegistryStorage


@dataclass(frozen=True)
class ManifestRecord:
    """A manifest revision of a repository and what it references."""

    digest: Digest
    touched: float
    blobs: frozenset[Digest] = frozenset()
    children: frozenset[Digest] = frozenset()
    subject: Digest | None = None


@dataclass(frozen=True)
class RepositoryRecord:
    """A repository's tags, manifest revisions and blob links (with their last touch)."""

    name: str
    tags: Mapping[str, Digest] = field(default_factory=dict)
    manifests: Mapping[Digest, ManifestRecord] = field(default_factory=dict)
    links: Mapping[Digest, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BlobRecord:
    """A blob's content: its size and when it was last written or linked."""

    size: int
    touched: float


@dataclass(frozen=True)
class Inventory:
    """A registry's content as garbage collection sees it."""

    repositories: tuple[RepositoryRecord, ...]
    blobs: Mapping[Digest, BlobRecord]
    pins: tuple[Pin, ...] = ()


@dataclass(frozen=True)
class GCPlan:
    """What garbage collection will delete, decided at ``cutoff`` (now minus the grace)."""

    cutoff: float
    manifests: tuple[tuple[str, Digest], ...]
    links: tuple[tuple[str, Digest], ...]
    blobs: tuple[tuple[Digest, int], ...]
    kept_manifests: int
    kept_blobs: int

    @property
    def bytes_freed(self) -> int:
        return sum(size for _, size in self.blobs)

    def to_json(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff,
            "manifests": [{"repository": r, "digest": str(d)} for r, d in self.manifests],
            "links": [{"repository": r, "digest": str(d)} for r, d in self.links],
            "blobs": [{"digest": str(d), "size": s} for d, s in self.blobs],
            "kept_manifests": self.kept_manifests,
            "kept_blobs": self.kept_blobs,
            "bytes_freed": self.bytes_freed,
        }


@dataclass(frozen=True)
class GCResult:
    """What :func:`apply_gc` deleted, and what it left because it changed meanwhile."""

    plan: GCPlan
    deleted_manifests: int
    deleted_links: int
    deleted_blobs: int
    bytes_freed: int
    skipped: int

    def to_json(self) -> dict[str, object]:
        return {
            "deleted_manifests": self.deleted_manifests,
            "deleted_links": self.deleted_links,
            "deleted_blobs": self.deleted_blobs,
            "bytes_freed": self.bytes_freed,
            "skipped": self.skipped,
        }


def _kept_manifests(repo: RepositoryRecord, pinned: set[Digest], cutoff: float) -> set[Digest]:
    roots = {d for d in repo.tags.values() if d in repo.manifests}
    roots |= {d for d in pinned if d in repo.manifests}
    roots |= {d for d, m in repo.manifests.items() if m.touched > cutoff}
    referrers: dict[Digest, set[Digest]] = {}
    for digest, record in repo.manifests.items():
        if record.subject is not None:
            referrers.setdefault(record.subject, set()).add(digest)
    kept: set[Digest] = set()
    todo = list(roots)
    while todo:
        digest = todo.pop()
        if digest in kept:
            continue
        kept.add(digest)
        if digest in repo.manifests:
            todo.extend(c for c in repo.manifests[digest].children if c in repo.manifests)
        todo.extend(referrers.get(digest, ()))
    return kept


def plan_gc(inventory: Inventory, now: float, grace: float) -> GCPlan:
    """Decide what to delete (see the module docstring); touches nothing."""
    cutoff = now - grace
    pins_by_repo: dict[str, set[Digest]] = {}
    for pin in inventory.pins:
        pins_by_repo.setdefault(pin.repository, set()).add(pin.digest)
    pinned_anywhere = {pin.digest for pin in inventory.pins}

    doomed_manifests: list[tuple[str, Digest]] = []
    doomed_links: list[tuple[str, Digest]] = []
    needed_blobs: set[Digest] = set(pinned_anywhere)
    kept_count = 0
    for repo in inventory.repositories:
        pinned = pins_by_repo.get(repo.name, set())
        kept = _kept_manifests(repo, pinned, cutoff)
        kept_count += len(kept)
        needed = set(kept) | pinned
        for digest in kept:
            needed |= repo.manifests[digest].blobs
        needed_blobs |= needed
        doomed_manifests += [(repo.name, d) for d in sorted(repo.manifests) if d not in kept]
        for digest, touched in sorted(repo.links.items()):
            if digest in needed:
                continue
            if touched > cutoff:
                # a fresh link is an upload whose manifest may not be pushed yet
                needed_blobs.add(digest)
                continue
            doomed_links.append((repo.name, digest))

    doomed_blobs = [
        (digest, blob.size)
        for digest, blob in sorted(inventory.blobs.items())
        if digest not in needed_blobs and blob.touched <= cutoff
    ]
    return GCPlan(
        cutoff=cutoff,
        manifests=tuple(doomed_manifests),
        links=tuple(doomed_links),
        blobs=tuple(doomed_blobs),
        kept_manifests=kept_count,
        kept_blobs=len(inventory.blobs) - len(doomed_blobs),
    )


def apply_gc(storage: RegistryStorage, plan: GCPlan) -> GCResult:
    """Delete what ``plan`` lists, manifests first, then links, then blobs."""
    skipped = 0
    manifests = links = blobs = freed = 0
    for repository, digest in plan.manifests:
        if storage.remove_manifest(repository, digest, plan.cutoff):
            manifests += 1
        else:
            skipped += 1
    for repository, digest in plan.links:
        if storage.remove_link(repository, digest, plan.cutoff):
            links += 1
        else:
            skipped += 1
    for digest, size in plan.blobs:
        if storage.remove_blob(digest, plan.cutoff):
            blobs += 1
            freed += size
        else:
            skipped += 1
    return GCResult(plan, manifests, links, blobs, freed, skipped)
