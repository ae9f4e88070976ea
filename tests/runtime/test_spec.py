"""The runtime spec is a pure function: exact pieces of config.json, no I/O."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from runners.runtime.spec import (
    DEFAULT_CAPABILITIES,
    DEFAULT_PATH,
    GATE_SCRIPT,
    BindMount,
    EtcFiles,
    HostLimits,
    IdMapping,
    InstanceSpec,
    Resources,
    RunDefaults,
    SpecError,
    parse_signal,
    runtime_spec,
)

pytestmark = pytest.mark.unit

HOST = HostLimits(nofile_soft=1024, nofile_hard=20000)
IMAGE = RunDefaults(
    entrypoint=("/app/entry",),
    cmd=("serve", "--port", "8080"),
    env=("PATH=/app/bin:/bin", "MODE=image", "EMPTY="),
    working_dir="/app",
    user="",
)
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n# comment\nbroken-line\n"
)
GROUP = "root:x:0:\nwheel:x:10:app,other\napp:x:1000:\nstaff:x:50:app\nother:x:60:other\n"


def spec(instance: InstanceSpec | None = None, **kwargs: Any) -> dict[str, Any]:
    return runtime_spec(
        instance or InstanceSpec(name="web-1", rootfs="/c/web-1/rootfs"), IMAGE, HOST, **kwargs
    )


def test_top_level_shape() -> None:
    config = spec()
    assert sorted(config) == ["hostname", "linux", "mounts", "ociVersion", "process", "root"]
    assert config["ociVersion"] == "1.0.2"
    assert config["hostname"] == "web-1"
    assert config["root"] == {"path": "/c/web-1/rootfs", "readonly": False}


def test_a_start_gate_is_a_create_runtime_hook_reading_its_fifo() -> None:
    gated = spec(InstanceSpec(name="web-1", rootfs="/r", start_gate="/c/web-1/start.gate"))
    assert gated["hooks"] == {
        "createRuntime": [
            {
                "path": "/bin/sh",
                "args": [
                    "sh",
                    "-c",
                    (
                        'read -r word < "$1"; got=$?; while read -r _; do :; done;'
                        ' [ "$got" = 0 ] && [ "$word" = go ]'
                    ),
                    "berth-start-gate",
                    "/c/web-1/start.gate",
                ],
            }
        ]
    }
    # the path is an argument, never part of the script: no quoting can break out
    odd = spec(InstanceSpec(name="web-1", rootfs="/r", start_gate='/c/"; reboot; "/gate'))
    assert odd["hooks"]["createRuntime"][0]["args"][2:] == [
        GATE_SCRIPT,
        "berth-start-gate",
        '/c/"; reboot; "/gate',
    ]
    with pytest.raises(SpecError, match="start gate 'gate' must be absolute"):
        spec(InstanceSpec(name="web-1", rootfs="/r", start_gate="gate"))


def test_process_defaults_come_from_the_image() -> None:
    process = spec()["process"]
    assert process["args"] == ["/app/entry", "serve", "--port", "8080"]
    assert process["cwd"] == "/app"
    assert process["terminal"] is False
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["env"] == [
        "PATH=/app/bin:/bin",
        "MODE=image",
        "EMPTY=",
        "HOSTNAME=web-1",
        "HOME=/",
    ]
    assert process["noNewPrivileges"] is True


def test_command_override_keeps_the_entrypoint() -> None:
    instance = InstanceSpec(name="w", rootfs="/r", command=("migrate",))
    assert spec(instance)["process"]["args"] == ["/app/entry", "migrate"]


def test_entrypoint_override_drops_the_image_cmd() -> None:
    instance = InstanceSpec(name="w", rootfs="/r", entrypoint=("/bin/sh", "-c"))
    assert spec(instance)["process"]["args"] == ["/bin/sh", "-c"]
    instance = InstanceSpec(name="w", rootfs="/r", entrypoint=("/bin/sh",), command=("-c", "true"))
    assert spec(instance)["process"]["args"] == ["/bin/sh", "-c", "true"]


def test_nothing_to_run_is_an_error() -> None:
    with pytest.raises(SpecError, match="instance w: nothing to run"):
        runtime_spec(InstanceSpec(name="w", rootfs="/r"), RunDefaults(), HOST)


def test_env_overrides_in_place_and_appends_new_names() -> None:
    instance = InstanceSpec(name="w", rootfs="/r", env={"MODE": "prod", "DB": "x=y"})
    env = spec(instance)["process"]["env"]
    assert env == ["PATH=/app/bin:/bin", "MODE=prod", "EMPTY=", "DB=x=y", "HOSTNAME=w", "HOME=/"]


def test_default_path_when_the_image_has_none() -> None:
    config = runtime_spec(
        InstanceSpec(name="w", rootfs="/r", command=("true",)), RunDefaults(), HOST
    )
    assert config["process"]["env"][0] == f"PATH={DEFAULT_PATH}"


def test_bad_env_name_is_an_error() -> None:
    with pytest.raises(SpecError, match="'A=B'"):
        spec(InstanceSpec(name="w", rootfs="/r", env={"A=B": "1"}))


def test_user_by_name_with_home_and_supplementary_groups() -> None:
    instance = InstanceSpec(name="w", rootfs="/r", user="app")
    process = spec(instance, passwd=PASSWD, group=GROUP)["process"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 50]}
    assert "HOME=/home/app" in process["env"]


def test_user_numeric_and_named_group() -> None:
    instance = InstanceSpec(name="w", rootfs="/r", user="1234:staff")
    assert spec(instance, passwd=PASSWD, group=GROUP)["process"]["user"] == {"uid": 1234, "gid": 50}


def test_unknown_user_is_an_error_naming_it() -> None:
    with pytest.raises(
        SpecError, match=r"user 'ghost' \(USER 'ghost'\) not found in the image's /etc/passwd"
    ):
        spec(InstanceSpec(name="w", rootfs="/r", user="ghost"), passwd=PASSWD)


def test_user_outside_the_id_mapping_is_an_error() -> None:
    instance = InstanceSpec(
        name="w", rootfs="/r", user="70000", id_mapping=IdMapping(100000, 100000)
    )
    with pytest.raises(SpecError, match=r"user 70000:0 is not mapped .* \(ids 0\.\.65535\)"):
        spec(instance)


def test_docker_default_capabilities() -> None:
    caps = spec()["process"]["capabilities"]
    expected = [
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
    ]
    assert list(DEFAULT_CAPABILITIES) == expected
    assert caps == {"bounding": expected, "effective": expected, "permitted": expected}
    assert "CAP_SYS_ADMIN" not in caps["bounding"]


def test_nofile_is_capped_at_the_host_hard_limit() -> None:
    assert spec()["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]
    instance = InstanceSpec(name="w", rootfs="/r", nofile=4096)
    assert spec(instance)["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}
    ]
    roomy = HostLimits(nofile_soft=1024, nofile_hard=2_000_000)
    config = runtime_spec(InstanceSpec(name="w", rootfs="/r"), IMAGE, roomy)
    assert config["process"]["rlimits"][0]["hard"] == 1_048_576


def test_nofile_above_the_host_hard_limit_is_an_error() -> None:
    with pytest.raises(SpecError, match="nofile 30000 is above this host's hard limit 20000"):
        spec(InstanceSpec(name="w", rootfs="/r", nofile=30000))


def test_all_namespaces_with_user_mapping() -> None:
    instance = InstanceSpec(name="w", rootfs="/r", id_mapping=IdMapping(100000, 200000))
    linux = spec(instance)["linux"]
    assert linux["namespaces"] == [
        {"type": "pid"},
        {"type": "network"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "user"},
    ]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]


def test_joining_an_existing_network_namespace() -> None:
    instance = InstanceSpec(name="w", rootfs="/r", netns="/run/netns/host-2-web-1")
    assert {"type": "network", "path": "/run/netns/host-2-web-1"} in spec(instance)["linux"][
        "namespaces"
    ]


def test_build_steps_turn_off_user_and_network_namespaces() -> None:
    linux = spec(InstanceSpec(name="w", rootfs="/r", host_network=True))["linux"]
    assert linux["namespaces"] == [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
    ]
    assert "uidMappings" not in linux
    assert "gidMappings" not in linux


def test_netns_and_host_network_exclude_each_other() -> None:
    with pytest.raises(SpecError, match="exclude each other"):
        spec(InstanceSpec(name="w", rootfs="/r", netns="/run/netns/x", host_network=True))


def _mount(config: dict[str, Any], destination: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [m for m in config["mounts"] if m["destination"] == destination]
    assert len(found) == 1, destination
    return found[0]


def test_standard_mounts() -> None:
    config = spec()
    assert [m["destination"] for m in config["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    assert _mount(config, "/proc") == {
        "destination": "/proc",
        "type": "proc",
        "source": "proc",
        "options": ["nosuid", "noexec", "nodev"],
    }
    assert _mount(config, "/dev")["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert _mount(config, "/dev/pts")["options"] == [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    ]
    assert _mount(config, "/dev/shm")["options"] == [
        "nosuid",
        "noexec",
        "nodev",
        "mode=1777",
        "size=65536k",
    ]
    assert _mount(config, "/dev/mqueue")["type"] == "mqueue"
    assert _mount(config, "/sys/fs/cgroup")["options"][-1] == "ro"


def test_sys_is_a_fresh_read_only_sysfs_without_user_namespace() -> None:
    assert _mount(spec(), "/sys") == {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    }


def test_sys_is_a_read_only_rbind_with_user_namespace() -> None:
    instance = InstanceSpec(name="w", rootfs="/r", id_mapping=IdMapping(100000, 100000))
    assert _mount(spec(instance), "/sys") == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }


def test_etc_files_and_bind_mounts() -> None:
    instance = InstanceSpec(
        name="w",
        rootfs="/r",
        etc_files=EtcFiles(
            hosts="/c/etc/hosts", hostname="/c/etc/hostname", resolv_conf="/c/etc/resolv.conf"
        ),
        mounts=(BindMount("/ctx", "/src", readonly=True), BindMount("/cache", "/var/cache")),
    )
    config = spec(instance)
    assert [m for m in config["mounts"] if m["type"] == "bind"] == [
        {
            "destination": "/etc/hosts",
            "type": "bind",
            "source": "/c/etc/hosts",
            "options": ["rbind", "rprivate"],
        },
        {
            "destination": "/etc/hostname",
            "type": "bind",
            "source": "/c/etc/hostname",
            "options": ["rbind", "rprivate"],
        },
        {
            "destination": "/etc/resolv.conf",
            "type": "bind",
            "source": "/c/etc/resolv.conf",
            "options": ["rbind", "rprivate"],
        },
        {
            "destination": "/src",
            "type": "bind",
            "source": "/ctx",
            "options": ["rbind", "rprivate", "ro"],
        },
        {
            "destination": "/var/cache",
            "type": "bind",
            "source": "/cache",
            "options": ["rbind", "rprivate"],
        },
    ]


def test_relative_bind_mount_is_an_error() -> None:
    with pytest.raises(SpecError, match="both paths must be absolute"):
        spec(InstanceSpec(name="w", rootfs="/r", mounts=(BindMount("ctx", "/src"),)))


def test_masked_and_readonly_paths_as_docker() -> None:
    linux = spec()["linux"]
    assert linux["maskedPaths"] == [
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
    ]
    assert linux["readonlyPaths"] == [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]


def test_resources_and_cgroups_path() -> None:
    instance = InstanceSpec(
        name="web-1",
        rootfs="/r",
        resources=Resources(memory_bytes=256 << 20, cpus=1.5, pids_limit=512),
    )
    linux = spec(instance)["linux"]
    assert linux["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": 268435456},
        "cpu": {"quota": 150000, "period": 100000},
        "pids": {"limit": 512},
    }
    assert linux["cgroupsPath"] == "/berth/web-1"


def test_cpu_shares_and_explicit_cgroups_path() -> None:
    instance = InstanceSpec(
        name="w", rootfs="/r", resources=Resources(cpu_shares=512), cgroups_path="/berth/env/w-7"
    )
    linux = spec(instance)["linux"]
    assert linux["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}],
        "cpu": {"shares": 512},
    }
    assert linux["cgroupsPath"] == "/berth/env/w-7"


def test_unlimited_by_default() -> None:
    assert spec()["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (Resources(memory_bytes=0), "memory_bytes must be positive"),
        (Resources(pids_limit=-1), "pids_limit must be positive"),
        (Resources(cpus=0.001), "cpus must be at least 0.01"),
    ],
)
def test_bad_limits_are_errors(resources: Resources, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(InstanceSpec(name="w", rootfs="/r", resources=resources))


@pytest.mark.parametrize("name", ["", "-lead", "trail-", "has space", "x" * 64, "under_score"])
def test_instance_name_must_be_a_hostname(name: str) -> None:
    with pytest.raises(SpecError, match="must be a valid hostname"):
        spec(InstanceSpec(name=name, rootfs="/r"))


def test_relative_cwd_and_rootfs_are_errors() -> None:
    with pytest.raises(SpecError, match="working directory 'app' must be absolute"):
        spec(InstanceSpec(name="w", rootfs="/r", cwd="app"))
    with pytest.raises(SpecError, match="rootfs 'r' must be absolute"):
        spec(InstanceSpec(name="w", rootfs="r"))


def test_readonly_rootfs() -> None:
    assert spec(InstanceSpec(name="w", rootfs="/r", readonly_rootfs=True))["root"] == {
        "path": "/r",
        "readonly": True,
    }


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("", signal.SIGTERM),
        ("SIGQUIT", signal.SIGQUIT),
        ("int", signal.SIGINT),
        ("9", 9),
        (" sigusr1 ", signal.SIGUSR1),
    ],
)
def test_stop_signals(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGNOPE", "0", "999"])
def test_bad_stop_signals(text: str) -> None:
    with pytest.raises(SpecError, match="is not a signal name or number"):
        parse_signal(text)
