"""Webhook deliveries already seen, for deduplication by (provider, delivery id)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from pipeline.store.base import Operations, check_text, check_time
from pipeline.store.database import insert_ignoring_conflict
from pipeline.store.schema import deliveries


class DeliveryOperations(Operations):
    """Remember webhook deliveries so a redelivered one is processed once."""

    def record_delivery(self, provider: str, delivery_id: str) -> bool:
        """Remember delivery ``delivery_id`` of ``provider``: True the first time, False
        for every later call, however many race at once."""
        check_text("webhook provider", provider, limit=40)
        check_text("delivery id", delivery_id)
        with self._tx() as conn:
            return insert_ignoring_conflict(
                conn,
                deliveries,
                {"provider": provider, "delivery_id": delivery_id, "received_at": self._now()},
                ["provider", "delivery_id"],
            )

    def forget_deliveries(self, received_before: datetime) -> int:
        """Drop deliveries received before ``received_before`` (providers stop
        redelivering after hours); return how many."""
        check_time("received_before", received_before)
        with self._tx() as conn:
            result = conn.execute(
                delete(deliveries).where(deliveries.c.received_at < received_before)
            )
            return int(result.rowcount)
