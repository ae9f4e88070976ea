"""Errors of the rollout machine, placement and router.

::

    BerthError
    └── RolloutError                 a rollout could not do what was asked
        ├── RolloutCommandError      a command does not apply to the rollout's phase
        ├── PlacementError           no host can take an instance, or depends_on has a cycle
        └── RouterError              the router's kernel rules could not be read or applied
"""

from __future__ import annotations

from pipeline.errors import BerthError

__all__ = ["PlacementError", "RolloutCommandError", "RolloutError", "RouterError"]


class RolloutError(BerthError):
    """A rollout could not do what was asked."""


class RolloutCommandError(RolloutError):
    """A command (resume, promote, abort, retry, rollback) does not fit the rollout's phase."""


class PlacementError(RolloutError):
    """No eligible host can take an instance, or apps depend on each other in a cycle."""


class RouterError(RolloutError):
    """The router's nftables rules could not be rendered, read or applied."""
