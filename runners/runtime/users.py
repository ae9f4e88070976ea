"""Who a container's process runs as: ``USER`` strings resolved against the image's files.

Pure: the caller reads ``/etc/passwd`` and ``/etc/group`` from the image (or passes
``None`` when the image has none) and gets numeric ids back, the way Docker resolves
``uid``, ``uid:gid``, ``name``, ``name:group`` and their mixes.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.errors import RuntimeFailure

MAX_ID = 2**32 - 2


class UserError(RuntimeFailure):
    """A ``USER`` that names no account of the image, or is not a valid id."""


@dataclass(frozen=True)
class ProcessUser:
    """The numeric identity of a container process, and its home directory."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def resolve_user(spec: str, passwd: str | None = None, group: str | None = None) -> ProcessUser:
    """Resolve ``spec`` (``""``, ``uid``, ``name``, each optionally ``:gid`` or ``:group``)."""
    user_part, _, group_part = spec.strip().partition(":")
    accounts = _parse_passwd(passwd or "")
    groups = _parse_group(group or "")

    account: _Account | None
    if user_part == "" or user_part.isdigit():
        uid = _numeric(user_part or "0", spec)
        account = next((a for a in accounts if a.uid == uid), None)
    else:
        account = next((a for a in accounts if a.name == user_part), None)
        if account is None:
            where = (
                "the image's /etc/passwd" if passwd is not None else "an image without /etc/passwd"
            )
            raise UserError(f"user {user_part!r} (USER {spec!r}) not found in {where}")
        uid = account.uid

    if group_part == "":
        gid = account.gid if account else 0
    elif group_part.isdigit():
        gid = _numeric(group_part, spec)
    else:
        found = next((g for g in groups if g.name == group_part), None)
        if found is None:
            where = "the image's /etc/group" if group is not None else "an image without /etc/group"
            raise UserError(f"group {group_part!r} (USER {spec!r}) not found in {where}")
        gid = found.gid

    extra: tuple[int, ...] = ()
    if account is not None:
        extra = tuple(sorted({g.gid for g in groups if account.name in g.members and g.gid != gid}))
    return ProcessUser(
        uid=uid, gid=gid, additional_gids=extra, home=account.home if account else "/"
    )


def _numeric(text: str, spec: str) -> int:
    value = int(text)
    if value > MAX_ID:
        raise UserError(f"USER {spec!r}: id {value} is larger than {MAX_ID}")
    return value


def _parse_passwd(text: str) -> list[_Account]:
    accounts = []
    for line in text.splitlines():
        fields = line.split(":")
        if line.startswith("#") or len(fields) < 7:
            continue
        name, _, uid, gid, _, home = fields[:6]
        if uid.isdigit() and gid.isdigit():
            accounts.append(_Account(name, int(uid), int(gid), home or "/"))
    return accounts


def _parse_group(text: str) -> list[_Group]:
    groups = []
    for line in text.splitlines():
        fields = line.split(":")
        if line.startswith("#") or len(fields) < 4 or not fields[2].isdigit():
            continue
        members = tuple(m for m in fields[3].split(",") if m)
        groups.append(_Group(fields[0], int(fields[2]), members))
    return groups
