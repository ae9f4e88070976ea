"""The agent: instances, images and host facts behind one object the API calls.

Every operation on an instance holds that instance's lock, so a retried ``PUT`` never
makes a second container and a ``DELETE`` never races a creation. Creation either
completes or removes what it made (rootfs mount, network, directory) before the error
reaches the caller. What is reported is *observed* — from the container's directory
and ``/proc`` — and the record (``records.py``) only adds what cannot be observed again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import wait
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from runners.agent.containers import HostContainers
from runners.agent.errors import (
    AgentError,
    BadSpec,
    Conflict,
    NotFound,
    NotStarted,
    OverCapacity,
)
from runners.agent.health import NONE, HealthState
from runners.agent.images import HostImages
from runners.agent.model import (
    InstanceSpec,
    check_instance_id,
    parse_spec,
    spec_to_json,
)
from runners.agent.networking import InstanceNetwork, check_host_ports
from runners.agent.records import InstanceRecord, RecordStore
from runners.errors import (
    DigestError,
    ReferenceError_,
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RuntimeFailure,
    SubprocessError,
)
from runners.oci.client import RegistryClient
from runners.oci.digest import Digest
from runners.oci.reference import Reference
from runners.runtime.layers import LayerStore
from runners.runtime.oci_runtime import ContainerState, ContainerStatus, RuncRuntime
from runners.runtime.spec import IdMapping, SpecError
from runners.runtime.unpack import UnpackOptions

_log = logging.getLogger(__name__)
DEFAULT_ID_MAPPING = IdMapping(host_uid=100000, host_gid=100000)


@dataclass(frozen=True)
class AgentConfig:
    """Everything an agent is built from; the CLI and tests construct it."""

    data: Path
    host_name: str
    network: InstanceNetwork
    runtime: RuncRuntime
    registry: RegistryClient
    id_mapping: IdMapping | None = DEFAULT_ID_MAPPING
    labels: dict[str, str] = field(default_factory=dict)
    # run-time state (:mod:`runners.agent.rundir`); None: kept under ``data`` with the rest
    run: Path | None = None


@dataclass
class Tracked:
    """What the agent knows about an instance in memory, besides its record."""

    record: InstanceRecord
    spec: InstanceSpec
    health: HealthState | None = None
    exit_seen: float | None = None  # monotonic time the current run's end was noticed
    next_probe: float = 0.0
    probing: bool = False
    restarting: bool = False  # between the decision to restart and the new run


class ImageUse:
    """Creations and pulls use the image store side by side; a collection uses it alone.

    An image is safe from :meth:`Agent.gc` once an instance's record names it; between
    its pull and that record (and while a pull's blobs are not yet in the image index)
    only this keeps a collection from removing what is about to be used. A waiting
    collection holds back new users, so a stream of starts cannot starve it.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._users = 0
        self._collecting = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._collecting)
            self._users += 1
        try:
            yield
        finally:
            with self._changed:
                self._users -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._collecting)
            self._collecting = True
            self._changed.wait_for(lambda: self._users == 0)
        try:
            yield
        finally:
            with self._changed:
                self._collecting = False
                self._changed.notify_all()


class Agent:
    """Instances, images and host facts of one container host."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.data = config.data
        run_root = None if config.run is None else config.run / "containers"
        for directory in (self.data, self.data / "containers", run_root):
            if directory is None:
                continue
            directory.mkdir(parents=True, exist_ok=True)
            # a user-namespaced container's root must traverse down to its rootfs
            os.chmod(directory, 0o711)  # noqa: S103
        self.records = RecordStore(self.data / "instances")
        self.containers = HostContainers(
            self.data / "containers",
            config.runtime,
            config.id_mapping,
            config.host_name,
            run_root=run_root,
        )
        mapping = config.id_mapping
        options = UnpackOptions(
            uid_shift=mapping.host_uid if mapping else 0,
            gid_shift=mapping.host_gid if mapping else 0,
        )
        self.images = HostImages(
            self.data, LayerStore(self.data / "store", options), config.registry
        )
        self.network = config.network
        self.boot_id = uuid.uuid4().hex
        self.started_at = time.time()
        self.boot_count = self._count_boot()
        self._guard = threading.Lock()
        self._image_use = ImageUse()
        self._locks: dict[str, threading.Lock] = {}
        self.tracked: dict[str, Tracked] = {}
        self.changed = threading.Event()
        self._runtime_version = _runtime_version(config.runtime)

    # -- start-up ------------------------------------------------------------------------

    def adopt(self) -> dict[str, list[str]]:
        """Find the instances a previous agent left: keep the recorded, remove orphans."""
        adopted, removed = [], []
        recorded = {record.id: record for record in self.records.all()}
        for record in recorded.values():
            if not self.containers.bundle(record.id).path.is_dir():
                self.network.detach(record.id)
                self.records.delete(record.id)
                removed.append(record.id)
                continue
            spec = parse_spec(record.spec)
            self.tracked[record.id] = Tracked(record, spec, HealthState() if spec.health else None)
            adopted.append(record.id)
        for container_id in self.containers.ids():
            if container_id not in recorded:
                # a creation cut short (the agent died mid-way): nobody was told it exists
                with contextlib.suppress(AgentError, RuntimeFailure, OSError):
                    self.containers.remove(container_id)
                    self.network.detach(container_id)
                    removed.append(container_id)
        self.changed.set()
        return {"adopted": adopted, "removed": removed}

    # -- instances -----------------------------------------------------------------------

    def put_instance(self, instance_id: str, doc: Any) -> tuple[bool, dict[str, Any]]:
        """Create and start ``instance_id`` from ``doc``; ``(created, view)``.

        The same spec again changes nothing; another spec for the id is a :class:`Conflict`.
        """
        check_instance_id(instance_id)
        spec = parse_spec(doc)
        canonical = spec_to_json(spec)
        with self._locked(instance_id):
            existing = self.records.get(instance_id)
            if existing is not None:
                if existing.spec != canonical:
                    raise Conflict(
                        f"instance {instance_id} exists with another spec; delete it first or"
                        " use a new instance id"
                    )
                return False, self.view(instance_id)
            self._check_capacity(instance_id, spec)
            # an image being started is not collected before its record names it
            with self._image_use.shared():
                self._create(instance_id, spec, canonical)
        self.changed.set()
        return True, self.view(instance_id)

    def _create(self, instance_id: str, spec: InstanceSpec, canonical: dict[str, Any]) -> None:
        """Pull, then prepare, attach, create and start."""
        digest = self._ensure_image(spec)
        # the runtime's cgroup lock warms up while the network and the bundle are made
        with self.containers.warming():
            self._prepare_and_start(instance_id, spec, canonical, digest)

    def _prepare_and_start(
        self, instance_id: str, spec: InstanceSpec, canonical: dict[str, Any], digest: Digest
    ) -> None:
        """Prepare, attach, create and start; on failure remove what was made."""
        image = self.images.prepare(digest)
        layer = self.containers.make_layer(instance_id)  # while the network is attached
        try:
            attachment = self.network.attach(instance_id, spec.ports)
        except BaseException:
            wait([layer])
            # only the directories: a namespace in the way of this one is not ours
            with contextlib.suppress(RuntimeFailure, OSError):
                self.containers.remove(instance_id)
            raise
        try:
            self.containers.create(instance_id, spec, image, attachment, layer)
            record = InstanceRecord(
                id=instance_id,
                spec=canonical,
                image_digest=str(digest),
                created_at=time.time(),
                address=attachment.address,
                run_started=time.monotonic(),
                labels=dict(spec.labels),
            )

            def connect() -> None:
                self.network.connect(instance_id, attachment, spec.ports)
                # written before the process runs: an agent killed from now on adopts,
                # not orphans, it (before, the gate's end of file fails the start)
                self.records.put(record)

            # the network is connected and the record written while the runtime creates
            # the container; the container's process waits for both at the start gate
            self.containers.start(instance_id, connect)
        except BaseException as exc:
            try:
                self._teardown(instance_id)
            except RuntimeFailure:
                _log.exception("instance %s: cleaning up a failed creation", instance_id)
            if isinstance(exc, SpecError):
                raise BadSpec(f"instance {instance_id}: {exc}") from exc
            if isinstance(exc, SubprocessError):
                raise NotStarted(
                    f"instance {instance_id}: the container did not start: {exc}"
                ) from exc
            raise
        self.tracked[instance_id] = Tracked(record, spec, HealthState() if spec.health else None)

    def delete_instance(self, instance_id: str) -> dict[str, Any]:
        """Stop (stop signal, wait, kill) and remove the instance and all it had."""
        check_instance_id(instance_id)
        with self._locked(instance_id):
            record = self.records.get(instance_id)
            if record is None:
                raise NotFound(f"instance {instance_id} does not exist on this host")
            tracked = self.tracked.get(instance_id)
            spec = tracked.spec if tracked else parse_spec(record.spec)
            view = self.view(instance_id)
            stop_signal = ""
            with contextlib.suppress(AgentError, RuntimeFailure, DigestError):
                stop_signal = self.images.prepare(
                    Digest.parse(record.image_digest)
                ).config.run.stop_signal
            status = self.containers.stop(instance_id, stop_signal, spec.stop_timeout)
            self.tracked.pop(instance_id, None)
            self._teardown(instance_id)
        view.update(state="deleted", exit_code=status.exit_code, pid=None)
        return view

    def get_instance(self, instance_id: str) -> dict[str, Any]:
        check_instance_id(instance_id)
        if self.records.get(instance_id) is None:
            raise NotFound(f"instance {instance_id} does not exist on this host")
        return self.view(instance_id)

    def list_instances(self) -> list[dict[str, Any]]:
        return [self.view(record.id, record) for record in self.records.all()]

    def view(self, instance_id: str, record: InstanceRecord | None = None) -> dict[str, Any]:
        """The instance as observed now."""
        tracked = self.tracked.get(instance_id)
        record = record or (tracked.record if tracked else None) or self.records.get(instance_id)
        if record is None:
            raise NotFound(f"instance {instance_id} does not exist on this host")
        status = self.containers.status(instance_id)
        health = tracked.health if tracked else None
        return {
            "id": instance_id,
            "host": self.config.host_name,
            "image": record.spec.get("image"),
            "digest": record.image_digest,
            "state": _state_name(status, record, tracked),
            "pid": status.pid,
            "exit_code": status.exit_code if status.state is ContainerState.STOPPED else None,
            "last_exit_code": record.last_exit_code,
            "oom_killed": record.oom_killed,
            "restarts": record.restarts,
            "health": health.status if health else NONE,
            "health_error": health.last_error if health else "",
            "address": record.address,
            "ports": record.spec.get("ports", []),
            "labels": record.labels,
            "created_at": record.created_at,
        }

    def log_paths(self, instance_id: str) -> dict[str, Path]:
        check_instance_id(instance_id)
        if self.records.get(instance_id) is None:
            raise NotFound(f"instance {instance_id} does not exist on this host")
        bundle = self.containers.bundle(instance_id)
        return {"stdout": bundle.stdout_log, "stderr": bundle.stderr_log}

    def is_running(self, instance_id: str) -> bool:
        state = self.containers.status(instance_id).state
        tracked = self.tracked.get(instance_id)
        restarting = tracked is not None and _restart_pending(tracked)
        return state in (ContainerState.RUNNING, ContainerState.CREATING) or restarting

    def exec(self, instance_id: str, argv: list[str], timeout: float) -> dict[str, Any]:
        check_instance_id(instance_id)
        if not argv:
            raise BadSpec("command: give the command to run in the container")
        if self.containers.status(instance_id).state is not ContainerState.RUNNING:
            raise Conflict(f"instance {instance_id} is not running; nothing to exec into")
        result = self.containers.exec(instance_id, argv, timeout)
        return {"exit_code": result.code, "stdout": result.stdout, "stderr": result.stderr}

    # -- images --------------------------------------------------------------------------

    def pull(self, image: Any) -> dict[str, Any]:
        ref = _reference(image, "image")
        with self._image_use.shared():
            digest = self._translate_registry(lambda: self.images.pull(ref), ref)
        return {"image": str(ref), "digest": str(digest)}

    def list_images(self) -> list[dict[str, Any]]:
        return self.images.listing(self._in_use())

    def pin(self, digest_text: str) -> dict[str, Any]:
        digest = _digest(digest_text)
        self.images.pin(digest)
        return {"digest": str(digest), "pinned": True}

    def unpin(self, digest_text: str) -> dict[str, Any]:
        digest = _digest(digest_text)
        self.images.unpin(digest)
        return {"digest": str(digest), "pinned": False}

    def gc(self) -> dict[str, list[str]]:
        """Remove images no instance uses and nobody pinned (after running starts)."""
        with self._image_use.exclusive():
            return self.images.gc(self._in_use())

    # -- host ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Capacity and identity of the host; also the heartbeat the control plane polls."""
        memory = _meminfo()
        running = sum(
            1
            for record in self.records.all()
            if self.containers.status(record.id).state is ContainerState.RUNNING
        )
        return {
            "host": self.config.host_name,
            "labels": self.config.labels,
            "boot_id": self.boot_id,
            "boot_count": self.boot_count,
            "started_at": self.started_at,
            "uptime": time.time() - self.started_at,
            "memory": {"total": memory.get("MemTotal", 0), "free": memory.get("MemAvailable", 0)},
            "cpus": os.cpu_count() or 1,
            "instances": len(self.records.all()),
            "running": running,
            "network": self.network.kind,
            "versions": {
                "berth": _berth_version(),
                "runtime": self._runtime_version,
                "kernel": platform.release(),
            },
        }

    # -- internals -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, instance_id: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(instance_id, threading.Lock())
        with lock:
            yield

    def try_locked(self, instance_id: str) -> contextlib.AbstractContextManager[bool]:
        """The instance's lock if free right now (the supervisor never waits on a request)."""
        with self._guard:
            lock = self._locks.setdefault(instance_id, threading.Lock())

        @contextlib.contextmanager
        def attempt() -> Iterator[bool]:
            got = lock.acquire(blocking=False)
            try:
                yield got
            finally:
                if got:
                    lock.release()

        return attempt()

    def _check_capacity(self, instance_id: str, spec: InstanceSpec) -> None:
        memory = spec.resources.memory_bytes
        total = _meminfo().get("MemTotal", 0)
        if memory is not None and total and memory > total:
            raise OverCapacity(
                f"instance {instance_id}: spec.resources.memory_bytes {memory} is more than this"
                f" host's memory ({total} bytes); ask for less or place it on a larger host"
            )
        cpus = spec.resources.cpus
        if cpus is not None and cpus > (os.cpu_count() or 1):
            raise OverCapacity(
                f"instance {instance_id}: spec.resources.cpus {cpus:g} is more than this host's"
                f" {os.cpu_count()} CPUs"
            )
        # from memory: every instance on this host is tracked (adopted at start-up), and
        # reading every record from disk made each start slower than the one before
        published = [
            (other, port)
            for other, tracked in list(self.tracked.items())
            for port in tracked.spec.ports
        ]
        check_host_ports(instance_id, spec.ports, published)

    def _ensure_image(self, spec: InstanceSpec) -> Digest:
        return self._translate_registry(
            lambda: self.images.ensure(spec.image, spec.digest), spec.image
        )

    def _translate_registry(self, action: Any, ref: Reference) -> Digest:
        try:
            result: Digest = action()
        except RegistryNotFound as exc:
            raise NotFound(f"image {ref}: not found in its registry: {exc}") from exc
        except RegistryAuthError as exc:
            raise AgentError(
                f"image {ref}: the registry refused this host: {exc}", status=403
            ) from exc
        except RegistryError as exc:
            raise AgentError(f"image {ref}: the registry failed: {exc}", status=502) from exc
        return result

    def _teardown(self, instance_id: str) -> None:
        """Remove the container, its mount, network and record; each step is best effort."""
        problems = []
        try:
            self.containers.remove(instance_id)
        except (RuntimeFailure, OSError) as exc:
            problems.append(str(exc))
        try:
            self.network.detach(instance_id)
        except (RuntimeFailure, OSError, AgentError) as exc:
            problems.append(str(exc))
        except Exception as exc:  # any failure must not hide the ones before it
            problems.append(str(exc))
        self.records.delete(instance_id)
        if problems:
            raise RuntimeFailure(
                f"instance {instance_id}: removal incomplete: {'; '.join(problems)}"
            )

    def _in_use(self) -> set[str]:
        return {record.image_digest for record in self.records.all()}

    def _count_boot(self) -> int:
        path = self.data / "agent.json"
        count = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            count = int(json.loads(path.read_text()).get("boot_count", 0))
        count += 1
        staged = path.with_name(".agent.json.tmp")
        staged.write_text(json.dumps({"boot_count": count, "boot_id": self.boot_id}))
        os.replace(staged, path)
        return count


def _state_name(status: ContainerStatus, record: InstanceRecord, tracked: Tracked | None) -> str:
    if status.state is ContainerState.RUNNING:
        return "running"
    if status.state is ContainerState.CREATING:
        return "starting"
    if status.state is ContainerState.ABSENT:
        return "missing"
    if tracked is not None and (tracked.restarting or _restart_pending(tracked)):
        return "restarting"
    return "exited"


def _restart_pending(tracked: Tracked) -> bool:
    from runners.agent.restarts import should_restart

    return (
        tracked.exit_seen is not None
        and not tracked.record.gave_up
        and should_restart(
            tracked.spec.restart, tracked.record.last_exit_code, tracked.record.restarts
        )
    )


def _reference(text: Any, where: str) -> Reference:
    if not isinstance(text, str) or not text:
        raise BadSpec(f"{where}: must be an image reference such as registry:5000/app:tag")
    try:
        return Reference.parse(text)
    except ReferenceError_ as exc:
        raise BadSpec(f"{where}: {exc}") from exc


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except DigestError as exc:
        raise BadSpec(f"digest {text!r}: {exc}") from exc


def _meminfo() -> dict[str, int]:
    found = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                found[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return found


def _berth_version() -> str:
    try:
        return metadata.version("berth")
    except metadata.PackageNotFoundError:
        return "unknown"


def _runtime_version(runtime: RuncRuntime) -> str:
    binary = runtime.commands.binary
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return f"{binary} (unknown version)"
    first = result.stdout.splitlines()[0] if result.stdout else binary
    return first.strip()
