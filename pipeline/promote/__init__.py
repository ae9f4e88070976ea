"""Promotion: the same release through the chain of environments, gated.

- :mod:`~pipeline.promote.policy` — may release R enter environment E? (pure)
- :mod:`~pipeline.promote.facts` — the policy's view of an app, read from the store
- :mod:`~pipeline.promote.gates` — gate results, the functional and perf gates
- :mod:`~pipeline.promote.loadgen` — the built-in load generator (async httpx)
- :mod:`~pipeline.promote.agentrunner` — gate containers on berth agents
- :mod:`~pipeline.promote.rollouts` — what promotion needs from the rollout engine
- :mod:`~pipeline.promote.service` — promote, approve, lock, gates, auto-promotion
- :mod:`~pipeline.promote.views` — status and history
- :mod:`~pipeline.promote.worker` — gate jobs in a background thread, with retries
"""
