"""``berth image import`` and ``berth image base``: images for offline builds.

Both write into the local image store (the build cache's OCI layout) that ``FROM``
resolves first; ``--push`` and ``--output`` send the image on from there.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.build import cache_dir_option, default_cache_dir
from pipeline.cli.context import emit_json, json_option


@click.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-t", "--tag", help="Reference to name the image (default: its name in FILE).")
@cache_dir_option
@json_option
def import_image(file: Path, tag: str | None, cache_dir: Path | None, as_json: bool) -> None:
    """Import an OCI archive or docker-archive into the local image store."""
    from pipeline.build.cache import BuildCache
    from pipeline.build.importer import import_archive
    from pipeline.build.lowers import unpack_stored

    cache = BuildCache(cache_dir or default_cache_dir())
    done = import_archive(file, cache.images, tag)
    for item in done:
        unpack_stored(cache, item.digest)
    if as_json:
        emit_json([{"reference": i.tag, "digest": str(i.digest)} for i in done])
        return
    for item in done:
        click.echo(f"{item.tag} {item.digest}")


@click.group()
def base() -> None:
    """Make minimal base images from what this host has."""


@base.command()
@click.option("-t", "--tag", required=True, help="Reference to name the image.")
@click.option(
    "--busybox",
    "binary",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("/bin/busybox"),
    show_default=True,
    help="A static busybox binary.",
)
@click.option("--push", is_flag=True, help="Also push the image to the registry -t names.")
@click.option(
    "--output",
    "-o",
    "outputs",
    multiple=True,
    metavar="oci:DIR|oci-archive:FILE",
    help="Also write the image to an OCI layout directory or archive.",
)
@click.option(
    "--source-date-epoch",
    type=int,
    default=0,
    show_default=True,
    help="Timestamp of every file and of the config.",
)
@cache_dir_option
@json_option
def busybox(
    tag: str,
    binary: Path,
    push: bool,
    outputs: tuple[str, ...],
    source_date_epoch: int,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """A base image of the host's static busybox, its applets, /etc/passwd, /etc/group, /tmp."""
    from pipeline.build.baseimage import make_busybox_image
    from pipeline.build.cache import BuildCache
    from pipeline.build.images import store_tag
    from pipeline.build.lowers import unpack_stored
    from pipeline.build.output import export_image
    from runners.oci.location import LocalImage, parse_location
    from runners.oci.reference import Reference

    ref = Reference.parse(tag)
    cache = BuildCache(cache_dir or default_cache_dir())
    manifest = make_busybox_image(cache, binary, store_tag(ref), source_date_epoch)
    unpack_stored(cache, manifest.digest)
    written = []
    for text in outputs:
        location = parse_location(text)
        if not isinstance(location, LocalImage):
            raise click.UsageError(
                f"--output {text!r}: expected oci:DIR[:TAG] or oci-archive:FILE[:TAG]"
            )
        written.append(export_image(cache.images, manifest, location, ref.tag))
    if push:
        from runners.oci.client import RegistryClient
        from runners.oci.session import RegistryOptions

        with RegistryClient(RegistryOptions()) as client:
            client.push_image(cache.images, ref, tag=store_tag(ref))
    if as_json:
        emit_json({"reference": store_tag(ref), "digest": str(manifest.digest), "outputs": written})
        return
    click.echo(f"{store_tag(ref)} {manifest.digest}")
