"""``berth image import``: OCI archives and docker-archives into the local image store.

An OCI archive (``skopeo copy … oci-archive:``) is copied blob by blob. A
docker-archive (``docker save``, ``skopeo copy … docker-archive:``) has a
``manifest.json`` naming a config and uncompressed layer tars; they become an OCI
manifest whose layers are those tars as they are (``…layer.v1.tar``), so their
digests are their diff ids and nothing is recompressed.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.build.errors import BuildError
from runners.errors import OCIError
from runners.oci import mediatypes
from runners.oci.archive import OCIArchive
from runners.oci.digest import CHUNK, Digest
from runners.oci.layout import OCILayout
from runners.oci.manifest import (
    DEFAULT_PLATFORM,
    MAX_MANIFEST_SIZE,
    REF_NAME_ANNOTATION,
    Descriptor,
    ImageIndex,
    ImageManifest,
    build_manifest,
    parse_manifest,
)
from runners.oci.reference import Reference


@dataclass(frozen=True)
class Imported:
    """One image now in the store: the tag it got and its manifest digest."""

    tag: str
    digest: Digest


def import_archive(path: Path, store: OCILayout, tag: str | None) -> list[Imported]:
    """Import every image of the archive ``path`` (``tag`` names it when it holds one)."""
    try:
        with tarfile.open(path, "r:") as tar:
            names = {m.name.lstrip("./") for m in tar.getmembers()}
    except (OSError, tarfile.TarError) as exc:
        raise BuildError(f"{path}: not a readable tar archive ({exc})") from exc
    if "oci-layout" in names and "index.json" in names:
        return _import_oci(path, store, tag)
    if "manifest.json" in names:
        return _import_docker(path, store, tag)
    raise BuildError(f"{path}: neither an OCI archive nor a docker-archive")


def _normal_tag(text: str, path: Path) -> str:
    try:
        return str(Reference.parse(text))
    except OCIError as exc:
        raise BuildError(f"{path}: image name {text!r}: {exc}; name it with -t REF") from exc


def _copy_blob(source: OCIArchive, store: OCILayout, digest: Digest) -> None:
    if store.has_blob(digest):
        return
    with source.open_blob(digest) as stream, store.blob_writer(digest) as writer:
        while chunk := stream.read(CHUNK):
            writer.write(chunk)
        writer.commit()


def _import_oci(path: Path, store: OCILayout, tag: str | None) -> list[Imported]:
    archive = OCIArchive.open(path)
    entries = archive.index().manifests
    if tag is not None and len(entries) != 1:
        raise BuildError(f"{path}: holds {len(entries)} images; -t names exactly one")
    done = []
    for entry in entries:
        name = tag or entry.annotations.get(REF_NAME_ANNOTATION)
        if not name:
            raise BuildError(f"{path}: an image has no name; give it one with -t REF")
        manifest = parse_manifest(
            archive.read_blob(entry.digest, MAX_MANIFEST_SIZE), entry.media_type
        )
        if isinstance(manifest, ImageIndex):
            child = manifest.select(DEFAULT_PLATFORM)
            _copy_blob(archive, store, entry.digest)
            manifest = parse_manifest(archive.read_blob(child.digest, MAX_MANIFEST_SIZE))
        assert isinstance(manifest, ImageManifest)
        for blob in manifest.blobs():
            _copy_blob(archive, store, blob.digest)
        _copy_blob(archive, store, manifest.digest)
        full = _normal_tag(str(name), path)
        store.add_manifest(manifest.descriptor, full)
        done.append(Imported(full, manifest.digest))
    return done


def _import_docker(path: Path, store: OCILayout, tag: str | None) -> list[Imported]:
    done = []
    with tarfile.open(path, "r:") as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            if member is None:
                raise BuildError(f"{path}: {name} is missing")
            with member:
                return member.read()

        try:
            images = json.loads(read("manifest.json"))
        except (ValueError, KeyError) as exc:
            raise BuildError(f"{path}: manifest.json unreadable: {exc}") from exc
        if tag is not None and len(images) != 1:
            raise BuildError(f"{path}: holds {len(images)} images; -t names exactly one")
        for image in images:
            config = read(image["Config"])
            config_digest = store.write_blob(config)
            layers = []
            for layer_name in image["Layers"]:
                member = tar.extractfile(layer_name)
                if member is None:
                    raise BuildError(f"{path}: layer {layer_name} is missing")
                with member:
                    hasher = Digest("sha256", "0" * 64).hasher()
                    data_size = 0
                    staged = store.root / "blobs" / "sha256" / ".import-layer"
                    with staged.open("wb") as out:
                        while chunk := member.read(CHUNK):
                            hasher.update(chunk)
                            out.write(chunk)
                            data_size += len(chunk)
                    digest = Digest("sha256", hasher.hexdigest())
                    staged.replace(store.blob_path(digest))
                media = mediatypes.OCI_LAYER
                with store.open_blob(digest) as head:
                    if head.read(2) == b"\x1f\x8b":
                        media = mediatypes.OCI_LAYER_GZIP
                layers.append(Descriptor(media, digest, data_size))
            manifest = build_manifest(
                Descriptor(mediatypes.OCI_CONFIG, config_digest, len(config)), layers
            )
            store.write_blob(manifest.raw)
            names = image.get("RepoTags") or []
            name = tag or (names[0] if names else None)
            if name is None:
                raise BuildError(f"{path}: image has no RepoTags; give it a name with -t REF")
            full = _normal_tag(name, path)
            store.add_manifest(manifest.descriptor, full)
            done.append(Imported(full, manifest.digest))
    return done
