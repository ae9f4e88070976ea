"""The OCI runtime spec (``config.json``) of one container, as a pure function.

:func:`runtime_spec` turns berth's decisions about an instance (:class:`InstanceSpec`),
the image's run defaults and the host's limits into the dict ``runc`` executes. It
reads no file and asks the kernel nothing; whatever it needs from the host arrives as
an argument, so tests pin the exact output.

The defaults follow Docker's: its capability set, masked and read-only paths, and the
standard mounts. With a user namespace, ``/sys`` is bind-mounted read-only (as runc's
rootless spec does), because sysfs cannot be mounted fresh from a namespace that does
not own the network namespace it joins.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runners.errors import RuntimeFailure
from runners.runtime.users import ProcessUser, UserError, resolve_user

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's default when the host allows it; capped at the host's hard limit.
DEFAULT_NOFILE = 1_048_576
CPU_PERIOD = 100_000
CGROUP_PARENT = "/berth"

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[^=\0]+$")


class SpecError(RuntimeFailure):
    """The instance's settings cannot make a valid runtime spec."""


class ImageDefaults(Protocol):
    """How an image says its containers start (the image config's ``config`` section)."""

    @property
    def entrypoint(self) -> tuple[str, ...]: ...
    @property
    def cmd(self) -> tuple[str, ...]: ...
    @property
    def env(self) -> tuple[str, ...]: ...
    @property
    def working_dir(self) -> str: ...
    @property
    def user(self) -> str: ...


@dataclass(frozen=True)
class RunDefaults:
    """Plain :class:`ImageDefaults`, for containers that do not come from an image config."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""


@dataclass(frozen=True)
class IdMapping:
    """A user namespace: container ids ``0..size-1`` are host ids ``host_uid..``/``host_gid..``."""

    host_uid: int
    host_gid: int
    size: int = 65536


@dataclass(frozen=True)
class Resources:
    """cgroup limits; ``None`` leaves a resource unlimited."""

    memory_bytes: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None


@dataclass(frozen=True)
class BindMount:
    """A host path made visible inside the container."""

    source: str
    destination: str
    readonly: bool = False


@dataclass(frozen=True)
class EtcFiles:
    """Host paths of the files berth writes for the container's ``/etc``."""

    hosts: str
    hostname: str
    resolv_conf: str


@dataclass(frozen=True)
class HostLimits:
    """What the host allows a container's rlimits to reach (``getrlimit`` of the agent)."""

    nofile_soft: int
    nofile_hard: int


@dataclass(frozen=True)
class InstanceSpec:
    """What berth decides about one container, on top of its image's defaults.

    ``id_mapping=None`` runs without a user namespace; ``netns`` joins an existing
    network namespace, ``host_network`` uses the host's (both off: a new empty one).
    ``start_gate`` is a FIFO the container waits on before its process runs
    (:func:`gate_hook`).
    """

    name: str
    rootfs: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    cwd: str | None = None
    user: str | None = None
    id_mapping: IdMapping | None = None
    netns: str | None = None
    host_network: bool = False
    etc_files: EtcFiles | None = None
    mounts: tuple[BindMount, ...] = ()
    resources: Resources = Resources()
    nofile: int | None = None
    cgroups_path: str | None = None
    readonly_rootfs: bool = False
    start_gate: str | None = None


def runtime_spec(
    instance: InstanceSpec,
    image: ImageDefaults,
    host: HostLimits,
    *,
    passwd: str | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """The ``config.json`` dict for ``instance``; ``passwd``/``group`` are the image's files."""
    _check_instance(instance)
    try:
        user = resolve_user(instance.user or image.user, passwd, group)
    except UserError as exc:
        raise SpecError(f"instance {instance.name}: {exc}") from exc
    if instance.id_mapping and max(user.uid, user.gid) >= instance.id_mapping.size:
        raise SpecError(
            f"instance {instance.name}: user {user.uid}:{user.gid} is not mapped into the"
            f" container's user namespace (ids 0..{instance.id_mapping.size - 1})"
        )
    process: dict[str, Any] = {
        "terminal": False,
        "user": _user(user),
        "args": process_args(instance, image),
        "env": merge_env(image.env, instance.env, home=user.home, hostname=instance.name),
        "cwd": _cwd(instance, image),
        "capabilities": {
            "bounding": list(DEFAULT_CAPABILITIES),
            "effective": list(DEFAULT_CAPABILITIES),
            "permitted": list(DEFAULT_CAPABILITIES),
        },
        "rlimits": [_nofile(instance, host)],
        "noNewPrivileges": True,
    }
    linux: dict[str, Any] = {"namespaces": namespaces(instance)}
    if instance.id_mapping is not None:
        mapping = instance.id_mapping
        linux["uidMappings"] = [
            {"containerID": 0, "hostID": mapping.host_uid, "size": mapping.size}
        ]
        linux["gidMappings"] = [
            {"containerID": 0, "hostID": mapping.host_gid, "size": mapping.size}
        ]
    linux["resources"] = resources(instance.resources)
    linux["cgroupsPath"] = instance.cgroups_path or f"{CGROUP_PARENT}/{instance.name}"
    linux["maskedPaths"] = list(MASKED_PATHS)
    linux["readonlyPaths"] = list(READONLY_PATHS)
    config = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": instance.rootfs, "readonly": instance.readonly_rootfs},
        "hostname": instance.name,
        "mounts": mounts(instance),
        "linux": linux,
    }
    if instance.start_gate is not None:
        config["hooks"] = {"createRuntime": [gate_hook(instance.start_gate)]}
    return config


GATE_SCRIPT = (
    'read -r word < "$1"; got=$?; while read -r _; do :; done; [ "$got" = 0 ] && [ "$word" = go ]'
)


def gate_hook(fifo: str) -> dict[str, Any]:
    """A ``createRuntime`` hook holding the container until ``go`` is written to ``fifo``.

    The runtime runs it once the container's namespaces exist and before the process is
    executed, so whatever the starter does meanwhile (connecting the network namespace)
    is done before the container's first instruction. Any other word, or end of file
    (the starter closed the gate or died), fails the hook, and with it the start.

    The hook reads its standard input (the container's state) to the end before it
    exits: crun writes the state after forking the hook, and a hook already gone by then
    (``go`` was waiting in the FIFO) killed crun with SIGPIPE, about one start in a few
    hundred. It has no ``timeout``: crun 1.8 waits for a hook with one by
    ``sigtimedwait`` and sometimes missed the exit of a hook that ended at once, waiting
    the whole timeout; without one it simply waits for the process. The gate cannot hang
    for good anyway: the starter closes it when its own start timeout passes.
    """
    return {
        "path": "/bin/sh",
        "args": ["sh", "-c", GATE_SCRIPT, "berth-start-gate", fifo],
    }


def process_args(instance: InstanceSpec, image: ImageDefaults) -> list[str]:
    """Entrypoint + command, with Docker's override rules.

    Overriding the entrypoint drops the image's ``Cmd`` (it was written for the old one).
    """
    if instance.entrypoint is not None:
        args = [*instance.entrypoint, *(instance.command or ())]
    else:
        command = instance.command if instance.command is not None else image.cmd
        args = [*image.entrypoint, *command]
    if not args:
        raise SpecError(
            f"instance {instance.name}: nothing to run; the image has no Entrypoint or Cmd"
            " and no command was given"
        )
    return args


def merge_env(
    image_env: tuple[str, ...], overrides: Mapping[str, str], *, home: str, hostname: str
) -> list[str]:
    """The image's ``Env`` with ``overrides`` applied in place, plus PATH, HOSTNAME, HOME."""
    merged: dict[str, str] = {}
    for item in image_env:
        name, sep, value = item.partition("=")
        if sep and name:
            merged[name] = value
    for name, value in overrides.items():
        if not _ENV_NAME.match(name) or "\0" in value:
            raise SpecError(f"environment variable {name!r}: names cannot be empty or hold '='")
        merged[name] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    merged.setdefault("HOSTNAME", hostname)
    merged.setdefault("HOME", home)
    return [f"{name}={value}" for name, value in merged.items()]


def namespaces(instance: InstanceSpec) -> list[dict[str, str]]:
    """pid, network, ipc, uts, mount and (with an id mapping) user."""
    found: list[dict[str, str]] = [{"type": "pid"}]
    if instance.netns is not None:
        found.append({"type": "network", "path": instance.netns})
    elif not instance.host_network:
        found.append({"type": "network"})
    found += [{"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if instance.id_mapping is not None:
        found.append({"type": "user"})
    return found


def mounts(instance: InstanceSpec) -> list[dict[str, Any]]:
    """The standard mounts, then ``/etc`` files, then the instance's own bind mounts."""
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if instance.id_mapping is None or instance.id_mapping.size > 5:
        devpts.append("gid=5")  # the tty group, when the namespace maps it
    if instance.id_mapping is not None:
        sysfs: dict[str, Any] = {
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        }
    else:
        sysfs = {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        }
    found: list[dict[str, Any]] = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts},
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        sysfs,
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]
    if instance.etc_files is not None:
        etc = instance.etc_files
        for destination, source in (
            ("/etc/hosts", etc.hosts),
            ("/etc/hostname", etc.hostname),
            ("/etc/resolv.conf", etc.resolv_conf),
        ):
            found.append(_bind(source, destination, readonly=False))
    found += [_bind(m.source, m.destination, readonly=m.readonly) for m in instance.mounts]
    return found


def resources(limits: Resources) -> dict[str, Any]:
    """``linux.resources``: deny devices by default (runc adds the standard ones), limits."""
    found: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if limits.memory_bytes is not None:
        found["memory"] = {"limit": limits.memory_bytes}
    cpu: dict[str, int] = {}
    if limits.cpus is not None:
        cpu["quota"] = round(limits.cpus * CPU_PERIOD)
        cpu["period"] = CPU_PERIOD
    if limits.cpu_shares is not None:
        cpu["shares"] = limits.cpu_shares
    if cpu:
        found["cpu"] = cpu
    if limits.pids_limit is not None:
        found["pids"] = {"limit": limits.pids_limit}
    return found


def parse_signal(text: str, default: int = signal.SIGTERM) -> int:
    """The number of a ``StopSignal`` such as ``SIGQUIT``, ``QUIT`` or ``3``."""
    text = text.strip().upper()
    if not text:
        return default
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text if text.startswith("SIG") else f"SIG{text}"
        try:
            return int(signal.Signals[name])
        except KeyError:
            pass
    raise SpecError(f"stop signal {text!r} is not a signal name or number (e.g. SIGTERM or 15)")


def _check_instance(instance: InstanceSpec) -> None:
    if not _HOSTNAME.match(instance.name):
        raise SpecError(
            f"instance name {instance.name!r}: must be a valid hostname (letters, digits, '-'"
            " and '.', at most 63 characters, starting and ending with a letter or digit)"
        )
    if not instance.rootfs.startswith("/"):
        raise SpecError(f"instance {instance.name}: rootfs {instance.rootfs!r} must be absolute")
    if instance.netns is not None and instance.host_network:
        raise SpecError(f"instance {instance.name}: netns and host_network exclude each other")
    if instance.start_gate is not None and not instance.start_gate.startswith("/"):
        raise SpecError(
            f"instance {instance.name}: start gate {instance.start_gate!r} must be absolute"
        )
    for mount in instance.mounts:
        if not mount.destination.startswith("/") or not mount.source.startswith("/"):
            raise SpecError(
                f"instance {instance.name}: bind mount {mount.source} -> {mount.destination}:"
                " both paths must be absolute"
            )
    limits = instance.resources
    for label, value in (
        ("memory_bytes", limits.memory_bytes),
        ("cpu_shares", limits.cpu_shares),
        ("pids_limit", limits.pids_limit),
    ):
        if value is not None and value <= 0:
            raise SpecError(f"instance {instance.name}: {label} must be positive (got {value})")
    if limits.cpus is not None and limits.cpus * CPU_PERIOD < 1000:
        raise SpecError(f"instance {instance.name}: cpus must be at least 0.01 (got {limits.cpus})")


def _cwd(instance: InstanceSpec, image: ImageDefaults) -> str:
    cwd = instance.cwd or image.working_dir or "/"
    if not cwd.startswith("/"):
        raise SpecError(f"instance {instance.name}: working directory {cwd!r} must be absolute")
    return cwd


def _user(user: ProcessUser) -> dict[str, Any]:
    found: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        found["additionalGids"] = list(user.additional_gids)
    return found


def _nofile(instance: InstanceSpec, host: HostLimits) -> dict[str, Any]:
    if instance.nofile is not None and instance.nofile > host.nofile_hard:
        raise SpecError(
            f"instance {instance.name}: nofile {instance.nofile} is above this host's hard"
            f" limit {host.nofile_hard}; containers cannot raise it (no CAP_SYS_RESOURCE)"
        )
    limit = min(instance.nofile or DEFAULT_NOFILE, host.nofile_hard)
    return {"type": "RLIMIT_NOFILE", "hard": limit, "soft": limit}


def _bind(source: str, destination: str, *, readonly: bool) -> dict[str, Any]:
    options = ["rbind", "rprivate"]
    if readonly:
        options.append("ro")
    return {"destination": destination, "type": "bind", "source": source, "options": options}
