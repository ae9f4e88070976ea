"""Webhooks from git hosts: verify, parse, and queue the pushed commit.

- :mod:`~pipeline.hooks.providers` - GitHub, GitLab, Gitea: headers, signatures, payloads
  (pure)
- :mod:`~pipeline.hooks.endpoint` - the Starlette endpoints and the checks in order
"""

from __future__ import annotations

from pipeline.hooks.endpoint import MAX_BODY, HookResult, HookTarget, WebhookHandler, hook_path_key
from pipeline.hooks.providers import PROVIDERS, PayloadError, Provider, PushEvent, hmac_sha256

__all__ = [
    "MAX_BODY",
    "PROVIDERS",
    "HookResult",
    "HookTarget",
    "PayloadError",
    "Provider",
    "PushEvent",
    "WebhookHandler",
    "hmac_sha256",
    "hook_path_key",
]
