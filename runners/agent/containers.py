"""One instance's container on this host: prepare its directory, start, restart, remove.

``<data>/containers/<id>/`` is the container's :class:`~runners.runtime.bundle.ContainerDir`
(its layer directory; the state directory is ``<run>/containers/<id>/`` on the agent's
tmpfs, :mod:`runners.agent.rundir`); the container id given to the runtime is the
instance id, and its cgroup is
``/berth/<host name>/<id>`` so that several agents on one machine (a simulated cluster)
never share one. A restart reuses the directory (the copy-on-write layer and the logs
survive, as with ``docker restart``) after moving the previous exit record aside.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path

from runners.agent.images import PreparedImage
from runners.agent.model import InstanceSpec
from runners.agent.networking import Attachment
from runners.errors import RuntimeFailure
from runners.runtime.bundle import ContainerDir, ExitRecord, default_hosts
from runners.runtime.host import host_limits, remove_cgroup_tree, remove_empty_cgroup
from runners.runtime.oci_runtime import ContainerState, ContainerStatus, RuncRuntime
from runners.runtime.rootfs import mount_rootfs, mounted_at, unmount_rootfs
from runners.runtime.spec import (
    CGROUP_PARENT,
    DEFAULT_PATH,
    IdMapping,
    Resources,
    parse_signal,
    runtime_spec,
)
from runners.runtime.spec import InstanceSpec as RuntimeInstance
from runners.threads import spawn


@dataclass(frozen=True)
class ExecResult:
    """What a command run inside a container returned."""

    code: int
    stdout: str
    stderr: str


def exec_command(pid: int, argv: list[str]) -> list[str]:
    """``argv`` run in every namespace, the root and the cwd of process ``pid`` (pure)."""
    return ["nsenter", "--target", str(pid), "--all", "--root", "--wd", "--", *argv]


class HostContainers:
    """The containers of one agent, each in ``root/<instance id>`` and ``run_root/<id>``."""

    def __init__(
        self,
        root: Path,
        runtime: RuncRuntime,
        id_mapping: IdMapping | None,
        host_name: str,
        run_root: Path | None = None,
    ) -> None:
        self.root = root
        self.run_root = run_root
        self.runtime = runtime
        self.id_mapping = id_mapping
        self.host_name = host_name
        self.limits = host_limits()

    def bundle(self, instance_id: str) -> ContainerDir:
        run = None if self.run_root is None else self.run_root / instance_id
        return ContainerDir(self.root / instance_id, run)

    def cgroups_path(self, instance_id: str) -> str:
        return f"{CGROUP_PARENT}/{self.host_name}/{instance_id}"

    def ids(self) -> list[str]:
        """Every container with a directory present (adopted or orphaned)."""
        found: set[str] = set()
        for root in (self.root, self.run_root):
            if root is not None and root.is_dir():
                found.update(p.name for p in root.iterdir() if p.is_dir())
        return sorted(found)

    def make_layer(self, instance_id: str) -> Future[None]:
        """Start making the container's layer directory (on disk, the slow part) on a
        thread, to overlap whatever comes before :meth:`create`."""
        bundle = self.bundle(instance_id)
        return spawn(lambda: bundle.create_layer(self.id_mapping), f"layer:{instance_id}")

    def create(
        self,
        instance_id: str,
        spec: InstanceSpec,
        image: PreparedImage,
        network: Attachment,
        layer: Future[None] | None = None,
    ) -> ContainerDir:
        """Prepare the container's directories, root filesystem and ``config.json``.

        ``layer`` is the :meth:`make_layer` under way, if one is; the state directory is
        written and the runtime spec computed meanwhile.
        """
        bundle = self.bundle(instance_id)
        layer = layer or self.make_layer(instance_id)
        try:
            if bundle.run is None:
                layer.result()  # one directory: the state goes inside the layer's
            bundle.create_state()
            self._write_state(bundle, instance_id, spec, image, network)
        except BaseException:
            wait([layer])  # whoever removes what was made must not race it
            raise
        layer.result()
        mount_rootfs(image.lower_dirs, bundle.upper, bundle.work, bundle.rootfs)
        return bundle

    def _write_state(
        self,
        bundle: ContainerDir,
        instance_id: str,
        spec: InstanceSpec,
        image: PreparedImage,
        network: Attachment,
    ) -> None:
        hosts = default_hosts(instance_id)
        if network.address:
            hosts += f"{network.address}\t{instance_id}\n"
        resolv = "".join(f"nameserver {ns}\n" for ns in network.nameservers) or "\n"
        bundle.write_etc(hostname=instance_id, hosts=hosts, resolv_conf=resolv)
        resources = Resources(
            memory_bytes=spec.resources.memory_bytes,
            cpus=spec.resources.cpus,
            pids_limit=spec.resources.pids,
        )
        instance = RuntimeInstance(
            name=instance_id,
            rootfs=str(bundle.rootfs),
            command=spec.command,
            entrypoint=spec.entrypoint,
            env=spec.env,
            id_mapping=self.id_mapping,
            netns=network.netns,
            etc_files=bundle.etc_files(),
            resources=resources,
            cgroups_path=self.cgroups_path(instance_id),
            start_gate=bundle.make_gate(),
        )
        # the spec is checked before anything is mounted: a bad USER mounts nothing
        config = runtime_spec(
            instance, image.config.run, self.limits, passwd=image.passwd, group=image.group
        )
        bundle.write_config(config)

    def warming(self) -> contextlib.AbstractContextManager[None]:
        """Held from a creation's first step: see :meth:`RuncRuntime.warming`."""
        return self.runtime.warming()

    def start(
        self, instance_id: str, meanwhile: Callable[[], None] | None = None
    ) -> ContainerStatus:
        """Start the container; its process waits at the start gate until ``meanwhile``
        (connecting its network) has returned."""
        return self.runtime.start(instance_id, self.bundle(instance_id), meanwhile)

    def restart(self, instance_id: str) -> ContainerStatus:
        """Run the container again in its directory, keeping its filesystem and logs."""
        bundle = self.bundle(instance_id)
        status = self.status(instance_id)
        if status.state not in (ContainerState.STOPPED, ContainerState.ABSENT):
            raise RuntimeFailure(
                f"container {instance_id}: cannot restart while {status.state.value}"
            )
        for stale in (bundle.exit_file, bundle.shim_pid, bundle.container_pid):
            stale.unlink(missing_ok=True)
        if not mounted_at(bundle.rootfs):
            raise RuntimeFailure(
                f"container {instance_id}: its root filesystem at {bundle.rootfs} is no longer"
                " mounted (was the host rebooted?); delete the instance and create it again"
            )
        return self.runtime.start(instance_id, bundle)

    def status(self, instance_id: str) -> ContainerStatus:
        return self.runtime.status(instance_id, self.bundle(instance_id))

    def exit_record(self, instance_id: str) -> ExitRecord | None:
        return self.bundle(instance_id).read_exit()

    def stop(self, instance_id: str, stop_signal: str, timeout: float) -> ContainerStatus:
        sig = parse_signal(stop_signal, signal.SIGTERM)
        return self.runtime.stop(instance_id, self.bundle(instance_id), sig, timeout)

    def remove(self, instance_id: str) -> None:
        """Delete the container, unmount its root filesystem and remove its directory."""
        bundle = self.bundle(instance_id)
        if not bundle.exists():
            return
        if bundle.shim_pid.exists():
            self.runtime.delete(instance_id, bundle)
        if bundle.rootfs.exists():
            unmount_rootfs(bundle.rootfs)
        bundle.remove()
        self._remove_cgroups(instance_id)

    def exec(self, instance_id: str, argv: list[str], timeout: float) -> ExecResult:
        """Run ``argv`` inside the running container; bounded by ``timeout`` seconds.

        ``nsenter`` rather than ``runc exec``: runc joins the user namespace first and
        then may no longer join a network namespace the host made; nsenter enters the
        ones it may first and the user namespace last.
        """
        status = self.status(instance_id)
        if status.pid is None:
            raise RuntimeFailure(f"container {instance_id} is not running; nothing to exec into")
        command = exec_command(status.pid, argv)
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env={"PATH": DEFAULT_PATH, "HOME": "/root", "HOSTNAME": instance_id},
            )
        except subprocess.TimeoutExpired:
            return ExecResult(code=124, stdout="", stderr=f"timed out after {timeout:g}s")
        return ExecResult(result.returncode, result.stdout, result.stderr)

    def _remove_cgroups(self, instance_id: str) -> None:
        # runc removes a container's cgroups when it ends; a container killed with its
        # supervisor may leave empty ones, which only rmdir can take away
        remove_cgroup_tree(self.cgroups_path(instance_id))

    def remove_cgroup_parents(self) -> None:
        """Remove this host's empty ``/berth/<host>`` cgroups (when no container is left)."""
        remove_empty_cgroup(f"{CGROUP_PARENT}/{self.host_name}")
        remove_empty_cgroup(CGROUP_PARENT)
