"""The restart policy (pure): whether an ended run is restarted, and after how long."""

from __future__ import annotations

from runners.agent.model import RestartPolicy


def should_restart(policy: RestartPolicy, exit_code: int | None, restarts: int) -> bool:
    """``on-failure`` restarts a run that ended non-zero (or unknown), within ``max_retries``."""
    if policy.policy != "on-failure" or exit_code == 0:
        return False
    return policy.max_retries is None or restarts < policy.max_retries


def restart_delay(policy: RestartPolicy, restarts: int) -> float:
    """Seconds to wait before restart number ``restarts + 1``: doubling, capped."""
    return float(min(policy.backoff * (2 ** min(restarts, 32)), policy.max_backoff))
