"""Errors of promotion, gates and chat-ops.

::

    BerthError                   pipeline.errors
    └── PromotionError           a promotion operation could not be done
        ├── PromotionRefused     the policy said no (``refusal`` says why, for HTTP codes)
        └── GateError            a gate could not run (not: the release failed the gate)

The REST API maps a refusal to 403 (``forbidden``), 404 (``unknown``), 409 (``locked``,
``conflict``, ``not-passed``) or 400 (``invalid``).
"""

from __future__ import annotations

from pipeline.errors import BerthError

__all__ = ["GateError", "PromotionError", "PromotionRefused"]


class PromotionError(BerthError):
    """A promotion, approval or lock operation could not be done."""


class PromotionRefused(PromotionError):
    """The promotion policy refused the request; nothing was changed."""

    def __init__(self, message: str, *, refusal: str) -> None:
        super().__init__(message)
        self.refusal = refusal


class GateError(PromotionError):
    """A gate could not be run at all (no entry address, no host, agent unreachable)."""
