"""The functional gate through :class:`AgentGateRunner` on a real agent: a one-shot
container from a real busybox image, ``BERTH_TARGET_URL`` pointing at a real HTTP server
on the agent's bridge, pass, fail with the output's tail, timeout, and no instance left.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.appspec import AppSpec
from pipeline.promote.agentrunner import AgentGateRunner, GateHost
from pipeline.promote.gates import GateStatus, run_functional_gate
from runners.agent.client import AgentClient
from tests.agent.conftest import RunningAgent, busybox_ref, shared_agent
from tests.helpers.procs import free_port

pytestmark = pytest.mark.privileged

__all__ = ["busybox_ref", "shared_agent"]  # the agent tests' fixtures, used here too

ANSWER = "pong-from-the-target"


class _Target(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (ANSWER if self.path == "/ping" else "no").encode()
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def target(shared_agent: RunningAgent) -> Iterator[str]:
    """``http://GATEWAY:PORT``: a server on the agent's bridge, reachable from containers."""
    server = ThreadingHTTPServer((shared_agent.gateway, free_port()), _Target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{shared_agent.gateway}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def client(shared_agent: RunningAgent) -> Iterator[AgentClient]:
    with shared_agent.client() as made:
        yield made


def _spec(command: list[str], timeout: str = "30s") -> AppSpec:
    return AppSpec.model_validate(
        {"tests": {"functional": {"command": command, "timeout": timeout}}}
    )


def _gate(
    client: AgentClient, image: str, target: str, command: list[str], timeout: str = "30s"
) -> tuple[str, object]:
    name = f"gate-{uuid.uuid4().hex[:10]}"
    runner = AgentGateRunner(
        [GateHost("other", client, {"zone": "b"}), GateHost("h1", client, {"zone": "a"})],
        poll_interval=0.1,
    )
    result = run_functional_gate(
        _spec(command, timeout),
        name=name,
        image=image,
        target_url=target,
        runner=runner,
        variables={"MODE": "test"},
        host_selector={"zone": "a"},
    )
    return name, result


def test_exit_zero_passes_and_the_container_saw_the_target(
    client: AgentClient, busybox_ref: str, target: str
) -> None:
    command = [
        "sh",
        "-c",
        'echo "mode=$MODE"; wget -q -O - "$BERTH_TARGET_URL/ping"; echo; echo "host=$(hostname)"',
    ]
    name, result = _gate(client, busybox_ref, target, command)
    assert result.status is GateStatus.PASSED, result
    assert result.message == "exit 0"
    assert "mode=test" in result.output
    assert ANSWER in result.output
    assert f"host={name}" in result.output  # it ran in the gate's own container
    assert name not in {item["id"] for item in client.instances()}


def test_non_zero_exit_fails_with_the_output_tail(
    client: AgentClient, busybox_ref: str, target: str
) -> None:
    command = ["sh", "-c", 'wget -q -O - "$BERTH_TARGET_URL/missing"; echo "tests broke"; exit 3']
    name, result = _gate(client, busybox_ref, target, command)
    assert result.status is GateStatus.FAILED
    assert result.message == "exit 3"
    assert "tests broke" in result.output
    assert result.terminal
    assert name not in {item["id"] for item in client.instances()}


def test_a_command_past_its_timeout_fails_and_is_removed(
    client: AgentClient, busybox_ref: str, target: str
) -> None:
    command = ["sh", "-c", "echo started; exec sleep 60"]
    name, result = _gate(client, busybox_ref, target, command, timeout="1s")
    assert result.status is GateStatus.FAILED
    assert result.message == "timed out after 1s (tests/functional/timeout)"
    assert "started" in result.output
    assert name not in {item["id"] for item in client.instances()}


def test_no_host_matching_the_selector_is_an_error_to_retry(
    client: AgentClient, busybox_ref: str, target: str
) -> None:
    runner = AgentGateRunner([GateHost("h1", client, {"zone": "a"})])
    result = run_functional_gate(
        _spec(["true"]),
        name=f"gate-{uuid.uuid4().hex[:10]}",
        image=busybox_ref,
        target_url=target,
        runner=runner,
        host_selector={"zone": "z"},
    )
    assert result.status is GateStatus.ERRORED
    assert result.retryable
    assert "no host with zone=z" in result.message
