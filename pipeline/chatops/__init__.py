"""Chat-ops: Slack and Mattermost slash commands in, notifications out.

- :mod:`~pipeline.chatops.verify` — Slack signatures (with replay protection), Mattermost tokens
- :mod:`~pipeline.chatops.commands` — the command dispatcher and its registry
- :mod:`~pipeline.chatops.routes` — ``POST /hooks/slack`` and ``POST /hooks/mattermost``
- :mod:`~pipeline.chatops.notify` — posting outcomes and event notifications, in the background
"""
