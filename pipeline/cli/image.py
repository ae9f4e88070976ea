"""``berth image``: push, pull, inspect and list images in OCI registries.

Images on disk are named the way skopeo names them: ``oci:DIR[:TAG]`` (an OCI layout
directory) or ``oci-archive:FILE[:TAG]``; images in registries by reference, optionally
prefixed with ``docker://``. Progress bars go to stderr, only when it is a terminal.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.cli.build import human_size
from pipeline.cli.context import emit_json, json_option
from runners.errors import OCIError
from runners.oci.archive import OCIArchive, staged_archive
from runners.oci.auth import Credentials, CredentialStore, docker_config_path
from runners.oci.client import RegistryClient
from runners.oci.imageconfig import ImageConfig, parse_config
from runners.oci.layout import OCILayout
from runners.oci.location import LocalFormat, LocalImage, parse_location
from runners.oci.manifest import (
    DEFAULT_PLATFORM,
    MAX_MANIFEST_SIZE,
    ImageIndex,
    ImageManifest,
    Manifest,
    Platform,
    parse_manifest,
)
from runners.oci.progress import BlobProgress, BlobState
from runners.oci.reference import Reference
from runners.oci.session import RegistryOptions, api_host
from runners.oci.transfer import BlobResult

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RegistryFlags:
    """The connection and credential flags every ``berth image`` command takes."""

    insecure: bool
    tls_verify: bool
    ca_cert: Path | None
    creds: str | None
    username: str | None
    password_stdin: bool
    quiet: bool

    def client(self, registry: str) -> RegistryClient:
        explicit: dict[str, Credentials] = {}
        if self.creds is not None:
            if self.username is not None or self.password_stdin:
                raise click.UsageError("use either --creds or --username/--password-stdin")
            explicit[registry] = Credentials.parse(self.creds)
        elif self.username is not None:
            if not self.password_stdin:
                raise click.UsageError("--username needs --password-stdin (or use --creds)")
            password = sys.stdin.readline().rstrip("\r\n")
            explicit[registry] = Credentials(self.username, password)
        elif self.password_stdin:
            raise click.UsageError("--password-stdin needs --username")
        options = RegistryOptions(
            insecure_hosts=frozenset({api_host(registry)}) if self.insecure else frozenset(),
            tls_verify=self.tls_verify,
            ca_cert=self.ca_cert,
        )
        return RegistryClient(options, CredentialStore(explicit, docker_config_path(os.environ)))


def registry_flags(func: F) -> F:
    """Add the shared connection flags; the command receives ``flags: RegistryFlags``."""
    options = [
        click.option(
            "--insecure",
            is_flag=True,
            help="Allow plain HTTP to this registry (loopback addresses always may).",
        ),
        click.option(
            "--tls-verify/--no-tls-verify",
            default=True,
            show_default=True,
            help="Verify the registry's TLS certificate.",
        ),
        click.option(
            "--ca-cert",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="PEM file of a CA to trust for the registry, besides the system's.",
        ),
        click.option("--creds", metavar="USER:PASS", help="Credentials for the registry."),
        click.option("--username", help="User name; the password is read from stdin."),
        click.option("--password-stdin", is_flag=True, help="Read the password from stdin."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars or tables."),
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        flags = RegistryFlags(
            insecure=kwargs.pop("insecure"),
            tls_verify=kwargs.pop("tls_verify"),
            ca_cert=kwargs.pop("ca_cert"),
            creds=kwargs.pop("creds"),
            username=kwargs.pop("username"),
            password_stdin=kwargs.pop("password_stdin"),
            quiet=kwargs.pop("quiet"),
        )
        return func(flags=flags, **kwargs)

    command: Any = wrapper
    for option in reversed(options):
        command = option(command)
    return command  # type: ignore[no-any-return]


def _registry_ref(text: str) -> Reference:
    location = parse_location(text)
    if not isinstance(location, Reference):
        raise click.UsageError(f"{text!r} is a local image; this needs a registry reference")
    return location


def _local(text: str) -> LocalImage:
    location = parse_location(text)
    if not isinstance(location, LocalImage):
        raise click.UsageError(f"{text!r} is not oci:DIR[:TAG] or oci-archive:FILE[:TAG]")
    return location


def _short(digest: object) -> str:
    text = str(digest)
    return text[: len("sha256:") + 12]


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Callable[[BlobProgress], None] | None]:
    """A progress callback drawing one Rich bar per blob on stderr, or None."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()
    labels = {
        BlobState.EXISTS: "exists",
        BlobState.MOUNTED: "mounted",
        BlobState.DONE: "done",
    }

    def update(event: BlobProgress) -> None:
        key = str(event.digest)
        with lock:
            if key not in tasks:
                tasks[key] = progress.add_task(_short(key), total=event.total or None)
            task = tasks[key]
        label = labels.get(event.state)
        description = f"{_short(key)} {label}" if label else _short(key)
        progress.update(
            task, completed=event.done, total=event.total or None, description=description
        )

    with progress:
        yield update


def _show_progress(flags: RegistryFlags, as_json: bool) -> bool:
    return not flags.quiet and not as_json and sys.stderr.isatty()


def _blob_rows(blobs: tuple[BlobResult, ...]) -> list[dict[str, Any]]:
    return [
        {
            "digest": str(b.digest),
            "size": b.size,
            "mediaType": b.media_type,
            "state": b.state.value,
        }
        for b in blobs
    ]


def _print_table(columns: list[str], rows: list[list[str]]) -> None:
    """Aligned columns, never wrapped: digests stay whole for copy and paste."""
    widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]
    for row in [columns, *rows]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


_STATE_WORDS = {
    BlobState.EXISTS: "exists",
    BlobState.MOUNTED: "mounted",
    BlobState.DONE: "transferred",
}


def _print_blobs(blobs: tuple[BlobResult, ...]) -> None:
    _print_table(
        ["BLOB", "SIZE", "RESULT"],
        [
            [str(b.digest), human_size(b.size), _STATE_WORDS.get(b.state, b.state.value)]
            for b in blobs
        ],
    )


@click.group()
def image() -> None:
    """Push, pull, inspect and list images in OCI registries.

    Local images are oci:DIR[:TAG] or oci-archive:FILE[:TAG]; registry images are
    references like registry.example.com/team/app:v1 (docker:// is accepted).
    """


@image.command()
@click.argument("source")
@click.argument("dest")
@click.option(
    "--mount-from",
    "mount_from",
    multiple=True,
    metavar="REPO",
    help="Repository on the same registry to mount blobs from instead of uploading.",
)
@registry_flags
@json_option
def push(
    flags: RegistryFlags, source: str, dest: str, mount_from: tuple[str, ...], as_json: bool
) -> None:
    """Push SOURCE (oci:DIR[:TAG] or oci-archive:FILE[:TAG]) to the registry as DEST."""
    local = _local(source)
    ref = _registry_ref(dest)
    image_source = local.open_source()
    with (
        flags.client(ref.registry) as client,
        progress_bars(_show_progress(flags, as_json)) as callback,
    ):
        result = client.push_image(
            image_source, ref, tag=local.tag, mount_from=mount_from, progress=callback
        )
    if as_json:
        emit_json(
            {
                "reference": str(result.reference),
                "digest": str(result.digest),
                "mediaType": result.media_type,
                "uploadedBytes": result.uploaded_bytes,
                "blobs": _blob_rows(result.blobs),
            }
        )
        return
    if not flags.quiet:
        _print_blobs(result.blobs)
    click.echo(str(result.reference))


@image.command()
@click.argument("reference")
@click.option(
    "-o",
    "--output",
    metavar="oci:DIR[:TAG]",
    help="Where to put the image: oci:DIR[:TAG] or oci-archive:FILE[:TAG] "
    "(default: oci:NAME:TAG in the current directory).",
)
@click.option(
    "--platform",
    default=str(DEFAULT_PLATFORM),
    show_default=True,
    help="Which image of a multi-platform index to pull (OS/ARCH[/VARIANT]).",
)
@registry_flags
@json_option
def pull(
    flags: RegistryFlags, reference: str, output: str | None, platform: str, as_json: bool
) -> None:
    """Pull REFERENCE from its registry into an OCI layout directory or archive."""
    ref = _registry_ref(reference)
    wanted = Platform.parse(platform)
    if output is None:
        target = LocalImage(LocalFormat.LAYOUT, Path(ref.repository.rsplit("/", 1)[-1]), ref.tag)
    else:
        target = _local(output)
    tag = target.tag or ref.tag
    fresh_directory = target.format is LocalFormat.LAYOUT and not target.path.exists()
    try:
        with flags.client(ref.registry) as client:
            if target.format is LocalFormat.ARCHIVE:
                staging: Any = staged_archive(target.path)
            else:
                staging = nullcontext(OCILayout.create(target.path))
            with staging as store, progress_bars(_show_progress(flags, as_json)) as callback:
                result = client.pull_image(ref, store, tag=tag, platform=wanted, progress=callback)
    except BaseException:
        # A failed pull into a new directory should not leave an empty layout behind.
        if fresh_directory:
            shutil.rmtree(target.path, ignore_errors=True)
        raise
    destination = str(LocalImage(target.format, target.path, tag))
    if as_json:
        emit_json(
            {
                "reference": str(result.reference),
                "digest": str(result.digest),
                "indexDigest": str(result.index_digest) if result.index_digest else None,
                "platform": str(result.platform) if result.platform else None,
                "output": destination,
                "downloadedBytes": result.downloaded_bytes,
                "blobs": _blob_rows(result.blobs),
            }
        )
        return
    if not flags.quiet:
        _print_blobs(result.blobs)
    click.echo(f"{result.reference} -> {destination}")


@image.command()
@click.argument("reference")
@click.option("--raw", is_flag=True, help="Print the manifest exactly as stored.")
@click.option(
    "--platform",
    default=None,
    help="For an index: show the image for this OS/ARCH[/VARIANT] instead of the list.",
)
@registry_flags
@json_option
def inspect(
    flags: RegistryFlags, reference: str, raw: bool, platform: str | None, as_json: bool
) -> None:
    """Show an image's manifest, configuration and layers (registry or local)."""
    location = parse_location(reference)
    if isinstance(location, Reference):
        with flags.client(location.registry) as client:
            manifest, config = _inspect_remote(client, location, platform)
    else:
        manifest, config = _inspect_local(location, platform)
    if raw:
        sys.stdout.buffer.write(manifest.raw)
        sys.stdout.buffer.flush()
        return
    data = _describe(str(location), manifest, config)
    if as_json:
        emit_json(data)
    else:
        _print_description(data, manifest)


def _inspect_remote(
    client: RegistryClient, ref: Reference, platform: str | None
) -> tuple[Manifest, ImageConfig | None]:
    manifest = client.get_manifest(ref)
    if isinstance(manifest, ImageIndex) and platform is not None:
        entry = manifest.select(Platform.parse(platform))
        manifest = client.get_manifest(ref.with_tag(None).with_digest(entry.digest))
    if isinstance(manifest, ImageManifest):
        return manifest, parse_config(client.fetch_blob(ref, manifest.config.digest))
    return manifest, None


def _inspect_local(
    location: LocalImage, platform: str | None
) -> tuple[Manifest, ImageConfig | None]:
    source: OCILayout | OCIArchive = location.open_source()
    descriptor = source.resolve(location.tag)
    manifest = parse_manifest(
        source.read_blob(descriptor.digest, MAX_MANIFEST_SIZE), descriptor.media_type
    )
    if isinstance(manifest, ImageIndex) and platform is not None:
        entry = manifest.select(Platform.parse(platform))
        manifest = parse_manifest(source.read_blob(entry.digest, MAX_MANIFEST_SIZE))
    if isinstance(manifest, ImageManifest):
        if not source.has_blob(manifest.config.digest):
            raise OCIError(f"{location}: config blob {manifest.config.digest} is missing")
        return manifest, parse_config(source.read_blob(manifest.config.digest, MAX_MANIFEST_SIZE))
    return manifest, None


def _describe(name: str, manifest: Manifest, config: ImageConfig | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reference": name,
        "digest": str(manifest.digest),
        "mediaType": manifest.media_type,
        "size": len(manifest.raw),
    }
    if isinstance(manifest, ImageIndex):
        data["manifests"] = [
            {
                "digest": str(m.digest),
                "mediaType": m.media_type,
                "size": m.size,
                "platform": str(m.platform) if m.platform else None,
            }
            for m in manifest.manifests
        ]
        return data
    data["layers"] = [
        {"digest": str(layer.digest), "mediaType": layer.media_type, "size": layer.size}
        for layer in manifest.layers
    ]
    data["imageSize"] = manifest.config.size + sum(layer.size for layer in manifest.layers)
    if config is not None:
        data["config"] = {
            "digest": str(config.digest),
            "platform": str(config.platform),
            "created": config.created,
            "entrypoint": list(config.run.entrypoint),
            "cmd": list(config.run.cmd),
            "env": list(config.run.env),
            "workingDir": config.run.working_dir,
            "user": config.run.user,
            "exposedPorts": list(config.run.exposed_ports),
            "labels": dict(config.run.labels),
        }
    return data


def _print_description(data: dict[str, Any], manifest: Manifest) -> None:
    click.echo(f"Reference:  {data['reference']}")
    click.echo(f"Digest:     {data['digest']}")
    click.echo(f"Media type: {data['mediaType']}")
    if isinstance(manifest, ImageIndex):
        _print_table(
            ["PLATFORM", "DIGEST", "SIZE"],
            [[m["platform"] or "-", m["digest"], human_size(m["size"])] for m in data["manifests"]],
        )
        return
    config = data.get("config")
    if config:
        click.echo(f"Platform:   {config['platform']}")
        click.echo(f"Created:    {config['created'] or '-'}")
        click.echo(f"Entrypoint: {config['entrypoint'] or '-'}")
        click.echo(f"Cmd:        {config['cmd'] or '-'}")
        if config["workingDir"]:
            click.echo(f"WorkingDir: {config['workingDir']}")
        if config["user"]:
            click.echo(f"User:       {config['user']}")
        if config["exposedPorts"]:
            click.echo(f"Ports:      {', '.join(config['exposedPorts'])}")
        for line in config["env"]:
            click.echo(f"Env:        {line}")
        for key, value in sorted(config["labels"].items()):
            click.echo(f"Label:      {key}={value}")
    click.echo(f"Size:       {human_size(data['imageSize'])}")
    _print_table(
        ["LAYER", "SIZE", "MEDIA TYPE"],
        [
            [layer["digest"], human_size(layer["size"]), layer["mediaType"]]
            for layer in data["layers"]
        ],
    )


@image.command()
@click.argument("repository")
@registry_flags
@json_option
def tags(flags: RegistryFlags, repository: str, as_json: bool) -> None:
    """List the tags of REPOSITORY (e.g. 127.0.0.1:5000/team/app)."""
    ref = _registry_ref(repository)
    with flags.client(ref.registry) as client:
        names = client.list_tags(ref)
    if as_json:
        emit_json({"repository": ref.name, "tags": names})
        return
    for name in names:
        click.echo(name)


def _register_build_commands() -> None:
    from pipeline.cli.image_build import base, import_image

    image.add_command(import_image)
    image.add_command(base)


_register_build_commands()
