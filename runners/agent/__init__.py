"""The berth agent: one per container host, driven over HTTP by the control plane.

- :mod:`~runners.agent.model` — the instance spec and its strict JSON parsing (pure).
- :mod:`~runners.agent.records` — instance records persisted under the data dir.
- :mod:`~runners.agent.images` — pulled images, the layer store, pins and gc.
- :mod:`~runners.agent.networking` — how an instance gets its network (protocol + kinds).
- :mod:`~runners.agent.containers` — one instance's container: prepare, start, tear down.
- :mod:`~runners.agent.health` — probes and the threshold machine (pure core).
- :mod:`~runners.agent.restarts` — the restart policy's back-off (pure).
- :mod:`~runners.agent.agent` — :class:`Agent`, the facade the API calls.
- :mod:`~runners.agent.supervisor` — the loop that restarts, probes and re-observes.
- :mod:`~runners.agent.logs` — tail and follow of instance logs.
- :mod:`~runners.agent.app` / :mod:`~runners.agent.server` — the HTTP API and its listeners.
- :mod:`~runners.agent.client` — :class:`AgentClient` (httpx) for the control plane and CLI.
"""
