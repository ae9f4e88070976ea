"""Grey releases: an environment moves from its stable release to a new one step by step.

- :mod:`~pipeline.rollout.model` - steps, options, phases and the rollout state (data)
- :mod:`~pipeline.rollout.events` - what can happen to a rollout, and what it asks for
- :mod:`~pipeline.rollout.machine` - the one pure ``transition(state, event, now)``
- :mod:`~pipeline.rollout.codec` - the state as the JSON the store keeps
- :mod:`~pipeline.rollout.placement` - which host runs which instance (pure)
- :mod:`~pipeline.rollout.router` - the nftables ruleset that splits traffic by weight
- :mod:`~pipeline.rollout.engine` - observe, decide, persist, act
"""
