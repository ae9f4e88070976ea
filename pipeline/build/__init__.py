"""The image builder: Dockerfile → plan (pure) → executor → deterministic layers → image.

- :mod:`~pipeline.build.plan` parses a Dockerfile into a :class:`BuildPlan` (pure).
- :mod:`~pipeline.build.expand` does Docker's variable expansion (pure).
- :mod:`~pipeline.build.imagestate` holds an image config while steps change it (pure).
- :mod:`~pipeline.build.context` indexes the build context (``.dockerignore``) and hashes
  what COPY reads.
- :mod:`~pipeline.build.cache` keeps layers by step key, with a size cap and LRU pruning.
- :mod:`~pipeline.build.images` resolves base images: the local store, then registries.
- :mod:`~pipeline.build.copy` and :mod:`~pipeline.build.run` make the layers of COPY/ADD
  and RUN steps; :mod:`~pipeline.build.executor` runs a plan.
"""
