"""Hosts: machines running ``berth agent``, keyed by name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, select, update

from pipeline.store.base import Operations, check_text, check_time
from pipeline.store.database import upsert
from pipeline.store.errors import InvalidInputError, NotFoundError
from pipeline.store.schema import hosts


@dataclass(frozen=True)
class Host:
    """A container host: where its agent listens, its labels, when it was last heard of."""

    name: str
    address: str
    labels: Mapping[str, str]
    last_heartbeat: datetime | None
    created_at: datetime
    updated_at: datetime


def _host(row: Row[Any]) -> Host:
    return Host(
        name=row.name,
        address=row.address,
        labels=dict(row.labels),
        last_heartbeat=row.last_heartbeat,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(labels, Mapping):
        raise InvalidInputError(f"host labels must be a mapping (got {type(labels).__name__})")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise InvalidInputError(
                f"host label {key!r}: {value!r}: labels map non-empty strings to strings"
            )
    return dict(labels)


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"unknown host {name!r}: it has not registered with the control plane")


class HostOperations(Operations):
    """Register hosts, record their heartbeats, read and forget them."""

    def upsert_host(self, name: str, address: str, labels: Mapping[str, str]) -> Host:
        """Register host ``name`` or update its address and labels."""
        check_text("host name", name)
        check_text("host address", address)
        document = _check_labels(labels)
        now = self._now()
        with self._tx() as conn:
            upsert(
                conn,
                hosts,
                {
                    "name": name,
                    "address": address,
                    "labels": document,
                    "last_heartbeat": None,
                    "created_at": now,
                    "updated_at": now,
                },
                ["name"],
                {"address": address, "labels": document, "updated_at": now},
            )
            return _host(conn.execute(select(hosts).where(hosts.c.name == name)).one())

    def record_heartbeat(self, name: str, at: datetime | None = None) -> Host:
        """Note that host ``name`` was heard from (now, or ``at``)."""
        when = self._now() if at is None else check_time("heartbeat time", at)
        with self._tx() as conn:
            result = conn.execute(
                update(hosts).where(hosts.c.name == name).values(last_heartbeat=when)
            )
            if result.rowcount != 1:
                raise _not_found(name)
            return _host(conn.execute(select(hosts).where(hosts.c.name == name)).one())

    def get_host(self, name: str) -> Host:
        """Host ``name``; :class:`NotFoundError` when there is none."""
        with self._tx(write=False) as conn:
            row = conn.execute(select(hosts).where(hosts.c.name == name)).first()
        if row is None:
            raise _not_found(name)
        return _host(row)

    def list_hosts(self) -> list[Host]:
        """Every host, by name."""
        with self._tx(write=False) as conn:
            return [_host(row) for row in conn.execute(select(hosts).order_by(hosts.c.name))]

    def remove_host(self, name: str) -> bool:
        """Forget host ``name``; True when it was known."""
        with self._tx() as conn:
            return conn.execute(delete(hosts).where(hosts.c.name == name)).rowcount == 1
