"""Real containers for tests: layers → overlay → config.json → runc, always torn down."""

from __future__ import annotations

import contextlib
import io
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runners.oci.digest import Digest
from runners.runtime.bundle import ContainerDir, default_hosts
from runners.runtime.host import host_limits
from runners.runtime.layers import LayerStore
from runners.runtime.oci_runtime import RuncRuntime, RuntimeCommands
from runners.runtime.rootfs import mount_rootfs, unmount_rootfs
from runners.runtime.spec import IdMapping, InstanceSpec, Resources, RunDefaults, runtime_spec

SHIFT = IdMapping(host_uid=100000, host_gid=100000)
APPLETS = ("sh", "echo", "cat", "hostname", "id", "sleep", "ls", "true", "touch", "rm")
CGROUP_PARENT = "/berth-test"


@dataclass
class Containers:
    """Prepares real containers (layers → overlay → config.json) and removes them all."""

    root: Path
    store: LayerStore
    base_layer: bytes
    runtime: RuncRuntime
    prefix: str = field(default_factory=lambda: f"bt{uuid.uuid4().hex[:8]}")
    made: list[tuple[str, ContainerDir]] = field(default_factory=list)

    def prepare(
        self,
        name: str,
        command: tuple[str, ...],
        *,
        id_mapping: IdMapping | None = SHIFT,
        resources: Resources | None = None,
        netns: str | None = None,
        gate: bool = False,
    ) -> tuple[str, ContainerDir]:
        """A container id (unique, test-prefixed) and its directory, ready to start."""
        container_id = f"{self.prefix}-{name}"
        layer = self.store.ensure_layer(
            Digest.of(self.base_layer), lambda: io.BytesIO(self.base_layer)
        )
        bundle = ContainerDir(self.root / "containers" / container_id)
        self.made.append((container_id, bundle))
        bundle.create(id_mapping)
        bundle.write_etc(
            hostname=container_id,
            hosts=default_hosts(container_id),
            resolv_conf="nameserver 127.0.0.1\n",
        )
        mount_rootfs([layer], bundle.upper, bundle.work, bundle.rootfs)
        instance = InstanceSpec(
            name=container_id,
            rootfs=str(bundle.rootfs),
            command=command,
            id_mapping=id_mapping,
            netns=netns,
            etc_files=bundle.etc_files(),
            resources=resources or Resources(),
            cgroups_path=f"{CGROUP_PARENT}/{container_id}",
            start_gate=bundle.make_gate() if gate else None,
        )
        bundle.write_config(runtime_spec(instance, RunDefaults(), host_limits()))
        return container_id, bundle

    def cleanup(self) -> None:
        commands = self.runtime.commands
        for container_id, bundle in reversed(self.made):
            # always force-delete, whatever the test did or failed to do
            subprocess.run(commands.delete(container_id), check=False, capture_output=True)
            with contextlib.suppress(Exception):
                self.runtime.wait(container_id, bundle, 10)
            if bundle.rootfs.exists():
                unmount_rootfs(bundle.rootfs)
        for controller in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(OSError):
                (controller / CGROUP_PARENT.lstrip("/")).rmdir()


@contextlib.contextmanager
def containers_with(
    commands: RuntimeCommands, root: Path, store: LayerStore, base_layer: bytes
) -> Iterator[Containers]:
    made = Containers(root, store, base_layer, RuncRuntime(commands))
    try:
        yield made
    finally:
        made.cleanup()
        made.runtime.close()
