"""deploy/README.md and the systemd units: what they tell people to run must work.

Every YAML block of the guide is a service config that ``berth config check`` accepts;
the agent options it suggests and the units' command lines parse with berth's own
commands (``test_units.py`` runs ``systemd-analyze verify`` on the units).
"""

from __future__ import annotations

import re
import shlex
from configparser import ConfigParser
from pathlib import Path

import click
import pytest

from pipeline.cli.agent import agent
from pipeline.cli.main import main
from pipeline.cli.serve import serve

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GUIDE = DEPLOY / "README.md"
UNITS = ("berth-serve.service", "berth-agent.service")
INSTALLED_BERTH = "/opt/berth/bin/berth"
LINUX_CAPABILITIES = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", GUIDE.read_text(), re.S | re.M)


def _unit(name: str) -> ConfigParser:
    # systemd repeats keys (CapabilityBoundingSet=); keep the last, read the rest raw
    parser = ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def _unit_lines(name: str, key: str) -> list[str]:
    text = (DEPLOY / "systemd" / name).read_text()
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def _parse(command: click.Command, args: list[str]) -> dict[str, object]:
    """The parameters ``command`` would run with (nothing is run)."""
    with command.make_context(command.name or "berth", args) as ctx:
        return dict(ctx.params)


@pytest.mark.parametrize("index", range(len(_blocks("yaml"))))
def test_guide_configs_pass_config_check(
    index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "berth.yml"
    config.write_text(_blocks("yaml")[index])
    assert main(["config", "check", str(config), "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out


def test_guide_has_the_multi_machine_config() -> None:
    (config,) = _blocks("yaml")
    assert "store: postgresql://" in config
    assert "registry:\n  url: https://" in config
    assert config.count("address: ") >= 3
    assert "token:\n      file:" in config


def test_guide_agent_options_parse(tmp_path: Path) -> None:
    token = tmp_path / "agent-token"
    token.write_text("t" * 32)
    lines = [
        line.split("=", 1)[1]
        for block in _blocks("sh")
        for line in block.splitlines()
        if line.startswith("BERTH_AGENT_OPTIONS=")
    ]
    assert lines, "the guide shows no BERTH_AGENT_OPTIONS"
    for line in lines:
        args = shlex.split(line.replace("/etc/berth/agent-token", str(token)))
        params = _parse(agent, args)
        assert any(str(a).startswith("tcp://") for a in params["listen"])  # type: ignore[attr-defined]
        assert params["token_file"] == token


def test_guide_links_resolve() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", GUIDE.read_text())
    assert "reference/config.md" in links
    assert "reference/cli.md" in links
    for link in links:
        assert (DEPLOY / link).is_file(), link


@pytest.mark.parametrize(
    ("unit", "command", "extra"),
    [
        ("berth-serve.service", serve, ["--workers", "2"]),
        ("berth-agent.service", agent, ["--label", "zone=a"]),
    ],
)
def test_unit_command_lines_parse(unit: str, command: click.Command, extra: list[str]) -> None:
    (exec_start,) = _unit_lines(unit, "ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == INSTALLED_BERTH
    assert argv[1] == command.name
    # $BERTH_*_OPTIONS is whatever /etc/default/berth-* holds; stand in an example
    variable = argv.pop()
    assert re.fullmatch(r"\$BERTH_[A-Z]+_OPTIONS", variable)
    params = _parse(command, argv[2:] + extra)
    assert params.get("config_path", Path("/etc/berth/berth.yml")) == Path("/etc/berth/berth.yml")
    assert params.get("data", Path("/var/lib/berth/agent")) == Path("/var/lib/berth/agent")


def test_units_keep_state_restart_and_bound_capabilities() -> None:
    serve_unit, agent_unit = (_unit(name)["Service"] for name in UNITS)
    assert serve_unit["StateDirectory"] == "berth"
    assert agent_unit["StateDirectory"] == "berth/agent"
    assert serve_unit["Restart"] == agent_unit["Restart"] == "always"
    # containers outlive their agent: only the agent process gets the stop signal
    assert agent_unit["KillMode"] == "process"
    serve_caps = {
        c for line in _unit_lines(UNITS[0], "CapabilityBoundingSet") for c in line.split()
    }
    agent_caps = {
        c for line in _unit_lines(UNITS[1], "CapabilityBoundingSet") for c in line.split()
    }
    assert {"CAP_SYS_ADMIN", "CAP_NET_ADMIN"} <= agent_caps
    assert "CAP_SYS_MODULE" not in agent_caps | serve_caps
    assert serve_caps <= agent_caps
    # systemd ignores a misspelt capability silently; the kernel's names are these
    assert serve_caps | agent_caps <= LINUX_CAPABILITIES
