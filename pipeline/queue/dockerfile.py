"""The Dockerfile builder: :class:`~pipeline.queue.builder.ImageBuilder` over
:mod:`pipeline.build`.

The commit's ``berth.yml`` says where the Dockerfile and the context are (``build:``),
which build args and which target to use. Steps run and are cached exactly as with
``berth build``; their progress goes to the build's log. ``FROM`` images resolve from
the cache's local image store first (``berth image base`` / ``berth image import`` with
the same ``--cache-dir``), then from their registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from pipeline.queue.builder import BuildFailed, BuildRequest, within
from runners.oci.client import RegistryClient
from runners.oci.layout import OCILayout
from runners.oci.reference import Reference


class _LogProgress:
    """The builder's per-step progress, as lines of the build log."""

    def __init__(self, log: BinaryIO) -> None:
        self._log = log

    def __call__(self, event: str, report: object, text: str) -> None:
        state = getattr(report, "state", None)
        label = "running" if event == "start" else (state or event)
        self._log.write(f" => {label:8} {text}\n".encode(errors="replace"))


class DockerfileImageBuilder:
    """Builds the app's Dockerfile and pushes the image (see the module docstring)."""

    def __init__(self, client: RegistryClient, *, cache_dir: Path) -> None:
        self._client = client
        self.cache_dir = cache_dir
        if (cache_dir / "tmp").is_dir():
            from pipeline.build.cache import BuildCache

            # steps of a control plane that was killed mid-build: stop and unmount them
            BuildCache(cache_dir).clean_stale_scratch()

    def build(self, request: BuildRequest, log: BinaryIO) -> str:
        # the builder and its runtime load only when a build runs
        from pipeline.build.cache import BuildCache
        from pipeline.build.context import SourceTree
        from pipeline.build.executor import Builder, BuildOptions
        from pipeline.build.images import ImageResolver, store_tag
        from pipeline.build.plan import plan_build
        from pipeline.build.run import RuncRunner

        settings = request.spec.build
        context = within(request.context, settings.context, "context")
        dockerfile = within(request.context, settings.dockerfile, "dockerfile")
        try:
            text = dockerfile.read_text()
        except FileNotFoundError:
            raise BuildFailed(
                f"{settings.dockerfile}: no such file in commit {request.revision[:12]}; add "
                "it or set build/dockerfile in berth.yml"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BuildFailed(f"{settings.dockerfile}: cannot read it: {exc}") from exc
        if not context.is_dir():
            raise BuildFailed(
                f"berth.yml: build/context: {settings.context!r} is not a directory in commit "
                f"{request.revision[:12]}"
            )
        tree = SourceTree.context(context)
        plan = plan_build(
            text,
            dict(settings.args),
            settings.target,
            context_index=tree.index if tree.ignore else None,
            source=settings.dockerfile,
        )
        ref = Reference.parse(request.ref)
        cache = BuildCache(self.cache_dir)
        resolver = ImageResolver(cache.images, self._pull)
        builder = Builder(cache, resolver, RuncRunner(), _LogProgress(log))
        options = BuildOptions(
            build_args=dict(settings.args),
            target=settings.target,
            source_date_epoch=request.source_date_epoch,
            source=request.source or None,
            revision=request.revision,
            tag=store_tag(ref),
        )
        result = builder.build(plan, tree, options)
        log.write(
            f" => image {result.digest} ({result.cached_steps} of {len(result.steps)} steps "
            "cached)\n".encode()
        )
        pushed = self._client.push_image(cache.images, ref, tag=options.tag)
        log.write(f" => pushed {pushed.reference} ({pushed.uploaded_bytes} bytes sent)\n".encode())
        # only when over the cap: builds run side by side on this cache, and a full prune
        # walks all of it after every one
        cache.prune_if_full()
        return str(result.digest)

    def _pull(self, ref: Reference, store: OCILayout, tag: str) -> None:
        self._client.pull_image(ref, store, tag=tag)
