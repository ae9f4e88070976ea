"""``berth build``: a Dockerfile and a context become an image, one cached layer per step.

Only what a build needs is imported: the registry client (httpx) loads when a base
image must be pulled or the result pushed, never for a build from the local store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.context import emit_json, json_option

if TYPE_CHECKING:
    from pipeline.build.executor import StepReport
    from runners.oci.layout import OCILayout
    from runners.oci.reference import Reference


def default_cache_dir() -> Path:
    """``$BERTH_CACHE_DIR``, else ``$XDG_CACHE_HOME/berth``, else ``~/.cache/berth``."""
    explicit = os.environ.get("BERTH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "berth"


def cache_dir_option(func: Any) -> Any:
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Build cache and local image store (default: $BERTH_CACHE_DIR or ~/.cache/berth).",
    )(func)


def parse_size(text: str) -> int:
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = value[-1:] if value[-1:] in units and not value[-1:].isdigit() else ""
    number = value[: -len(unit)] if unit else value
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected a size like 10G or 500M") from None


def registry_puller(insecure: bool) -> Any:
    """A :data:`pipeline.build.images.Puller` over the registry client (imported lazily)."""

    def pull(ref: Reference, store: OCILayout, tag: str) -> None:
        from runners.oci.client import RegistryClient
        from runners.oci.session import RegistryOptions, api_host

        options = RegistryOptions(
            insecure_hosts=frozenset({api_host(ref.registry)}) if insecure else frozenset()
        )
        with RegistryClient(options) as client:
            client.pull_image(ref, store, tag=tag)

    return pull


def _epoch(explicit: int | None, context: Path) -> tuple[int, str | None]:
    """SOURCE_DATE_EPOCH: the option, the environment, the context's git commit, or 0."""
    revision = _git(context, "rev-parse", "HEAD")
    if explicit is not None:
        return explicit, revision
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        if not env.isdigit():
            raise click.BadParameter(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds")
        return int(env), revision
    commit_time = _git(context, "log", "-1", "--format=%ct")
    return (int(commit_time) if commit_time and commit_time.isdigit() else 0), revision


def _git(context: Path, *args: str) -> str | None:
    if not (context / ".git").exists():
        return None
    result = subprocess.run(
        ["git", "-C", str(context), *args], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


def human_size(size: int) -> str:
    """``size`` bytes as people read them: 512 B, 42.3 KiB, 50.0 MiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class StepPrinter:
    """Per-step progress lines on stderr: cached / running / built with the layer size."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started = time.monotonic()
        self.step_started = self.started

    def __call__(self, event: str, report: StepReport | None, text: str) -> None:
        if self.quiet:
            return
        if event == "start":
            self.step_started = time.monotonic()
            click.echo(f" => running  {text}", err=True)
            return
        assert report is not None
        if report.state == "config":
            click.echo(f" => config   {report.stage}:{report.line} {text}", err=True)
            return
        took = time.monotonic() - self.step_started
        size = human_size(report.size)
        detail = f"{size}" if report.state == "cached" else f"{size}, {took:.2f}s"
        click.echo(
            f" => {report.state:<8} {report.stage}:{report.line} {text}  ({detail})", err=True
        )


@click.command()
@click.argument(
    "context", type=click.Path(exists=True, file_okay=False, path_type=Path), default="."
)
@click.option(
    "-f",
    "--file",
    "dockerfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Dockerfile (default: CONTEXT/Dockerfile).",
)
@click.option("-t", "--tag", help="Image reference to name (and --push) the result.")
@click.option("--push", is_flag=True, help="Push the image to the registry -t names.")
@click.option("--build-arg", "build_args", multiple=True, metavar="K=V", help="Set an ARG.")
@click.option("--target", help="Build up to this stage (FROM … AS NAME).")
@click.option("--no-cache", is_flag=True, help="Run every step again (results still cached).")
@click.option(
    "--output",
    "-o",
    "outputs",
    multiple=True,
    metavar="oci:DIR|oci-archive:FILE",
    help="Also write the image to an OCI layout directory or archive.",
)
@click.option(
    "--network",
    type=click.Choice(["none", "host"]),
    default="none",
    show_default=True,
    help="Network of RUN steps.",
)
@click.option(
    "--run-timeout",
    type=float,
    default=3600.0,
    show_default=True,
    help="Seconds a RUN step may take before it is killed and the build fails.",
)
@click.option(
    "--source-date-epoch",
    type=int,
    default=None,
    help="Timestamp of layers and config (default: $SOURCE_DATE_EPOCH, the git commit time, 0).",
)
@click.option("--source", "source_url", help="org.opencontainers.image.source annotation.")
@click.option(
    "--revision", help="org.opencontainers.image.revision (default: the context's git HEAD)."
)
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to non-loopback registries.")
@click.option(
    "--cache-max-size",
    default="10G",
    show_default=True,
    help="Cap of the build cache; least recently used steps are pruned after a build.",
)
@cache_dir_option
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@json_option
def build(
    context: Path,
    dockerfile: Path | None,
    tag: str | None,
    push: bool,
    build_args: tuple[str, ...],
    target: str | None,
    no_cache: bool,
    outputs: tuple[str, ...],
    network: str,
    run_timeout: float,
    source_date_epoch: int | None,
    source_url: str | None,
    revision: str | None,
    insecure: bool,
    cache_max_size: str,
    cache_dir: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Build CONTEXT's Dockerfile into an image, one cached layer per step."""
    from pipeline.build.cache import BuildCache
    from pipeline.build.context import SourceTree
    from pipeline.build.executor import Builder, BuildOptions
    from pipeline.build.images import ImageResolver, store_tag
    from pipeline.build.output import export_image
    from pipeline.build.plan import plan_build
    from runners.oci.location import LocalImage, parse_location
    from runners.oci.reference import Reference

    args: dict[str, str] = {}
    for item in build_args:
        name, eq, value = item.partition("=")
        if not name:
            raise click.BadParameter(f"{item!r}: expected K=V", param_hint="--build-arg")
        args[name] = value if eq else os.environ.get(name, "")
    if push and not tag:
        raise click.UsageError("--push needs -t REF")
    ref = Reference.parse(tag) if tag else None
    locations = []
    for text in outputs:
        location = parse_location(text)
        if not isinstance(location, LocalImage):
            raise click.UsageError(
                f"--output {text!r}: expected oci:DIR[:TAG] or oci-archive:FILE[:TAG]"
            )
        locations.append(location)
    dockerfile = dockerfile or context / "Dockerfile"
    try:
        text = dockerfile.read_text()
    except OSError as exc:
        raise click.UsageError(f"{dockerfile}: cannot read the Dockerfile: {exc.strerror}") from exc
    epoch, git_revision = _epoch(source_date_epoch, context)
    tree = SourceTree.context(context)
    plan = plan_build(
        text,
        args,
        target,
        context_index=tree.index if tree.ignore else None,
        source=dockerfile.name,
    )
    cache = BuildCache(cache_dir or default_cache_dir(), parse_size(cache_max_size))
    resolver = ImageResolver(cache.images, registry_puller(insecure))
    builder = Builder(cache, resolver, None, StepPrinter(quiet or as_json))
    options = BuildOptions(
        build_args=args,
        target=target,
        no_cache=no_cache,
        host_network=network == "host",
        run_timeout=run_timeout,
        source_date_epoch=epoch,
        source=source_url,
        revision=revision or git_revision,
        tag=store_tag(ref) if ref else None,
    )
    result = builder.build(plan, tree, options)
    written = [
        export_image(cache.images, result.manifest, location, ref.tag if ref else None)
        for location in locations
    ]
    pushed = None
    if push and ref is not None:
        from runners.oci.client import RegistryClient
        from runners.oci.session import RegistryOptions, api_host

        reg_options = RegistryOptions(
            insecure_hosts=frozenset({api_host(ref.registry)}) if insecure else frozenset()
        )
        with RegistryClient(reg_options) as client:
            pushed = client.push_image(cache.images, ref, tag=options.tag)
    cache.prune_if_full()
    if as_json:
        emit_json(
            {
                "digest": str(result.digest),
                "reference": str(pushed.reference) if pushed else (options.tag or None),
                "layers": [
                    {"digest": str(d.digest), "size": d.size, "mediaType": d.media_type}
                    for d in result.layers
                ],
                "cachedSteps": result.cached_steps,
                "steps": [
                    {
                        "stage": s.stage,
                        "line": s.line,
                        "instruction": s.instruction,
                        "state": s.state,
                        "layer": str(s.layer) if s.layer else None,
                        "size": s.size,
                    }
                    for s in result.steps
                ],
                "outputs": written,
                "pushedBytes": pushed.uploaded_bytes if pushed else None,
            }
        )
        return
    if not quiet:
        click.echo(f" => image {result.digest} ({result.cached_steps} cached steps)", err=True)
    click.echo(str(pushed.reference) if pushed else str(result.digest))
    sys.stdout.flush()
