"""Bad requests to a real agent: each a 4xx naming the problem, and nothing left behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runners import network as net
from runners.agent.errors import NotStarted, OverCapacity
from tests.agent.conftest import RunningAgent, container_names, host_traces

pytestmark = pytest.mark.privileged


@pytest.fixture
def api(shared_agent: RunningAgent) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(uds=str(shared_agent.socket))
    with httpx.Client(base_url="http://agent", transport=transport, timeout=60) as client:
        yield client
        for item in client.get("/v1/instances").json()["instances"]:
            client.delete(f"/v1/instances/{item['id']}")


def _refused(
    agent: RunningAgent, api: httpx.Client, status: int, body: Any, *, raw: bytes | None = None
) -> str:
    before = host_traces(agent)
    if raw is not None:
        response = api.put("/v1/instances/bad-one", content=raw)
    else:
        response = api.put("/v1/instances/bad-one", json=body)
    assert response.status_code == status, response.text
    after = host_traces(agent)
    assert after == before, "the refused request left something behind"
    assert api.get("/v1/instances/bad-one").status_code == 404
    error = response.json()["error"]
    assert error["status"] == status
    assert error["kind"] in KINDS_BY_STATUS[status], error
    message: str = error["message"]
    return message


KINDS_BY_STATUS = {
    400: {"bad_spec"},
    404: {"not_found"},
    409: {"conflict"},
    422: {"over_capacity", "not_started", "unusable_image"},
    500: {"error"},
}


def test_unknown_image_is_404(
    shared_agent: RunningAgent, api: httpx.Client, busybox_ref: str
) -> None:
    missing = busybox_ref.replace("test/busybox:v1", "test/nothing-here:v1")
    message = _refused(shared_agent, api, 404, {"image": missing, "command": ["true"]})
    assert "nothing-here" in message


def test_malformed_specs_name_the_field(
    shared_agent: RunningAgent, api: httpx.Client, busybox_ref: str
) -> None:
    assert "not valid JSON" in _refused(shared_agent, api, 400, None, raw=b"{not json")
    assert "spec.image: missing" in _refused(shared_agent, api, 400, {"command": ["true"]})
    bad_port = {"image": busybox_ref, "ports": [{"host": 70000, "container": 80}]}
    assert "spec.ports[0].host" in _refused(shared_agent, api, 400, bad_port)
    bad_command = {"image": busybox_ref, "command": "echo hi"}
    assert "spec.command: must be a list of strings" in _refused(
        shared_agent, api, 400, bad_command
    )
    bad_health = {"image": busybox_ref, "health": {"kind": "http"}}
    assert "spec.health.port: missing" in _refused(shared_agent, api, 400, bad_health)


def test_unknown_fields_are_refused_by_name(
    shared_agent: RunningAgent, api: httpx.Client, busybox_ref: str
) -> None:
    message = _refused(shared_agent, api, 400, {"image": busybox_ref, "comand": ["true"]})
    assert "spec.comand: unknown field" in message
    nested = {"image": busybox_ref, "resources": {"memory": 1 << 20}}
    assert "spec.resources.memory: unknown field" in _refused(shared_agent, api, 400, nested)
    query = api.get("/v1/instances", params={"colour": "red"})
    assert query.status_code == 400
    assert "colour" in query.json()["error"]["message"]


def test_a_port_already_taken(
    shared_agent: RunningAgent, api: httpx.Client, busybox_ref: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))  # noqa: S104 -- a local listener that holds the port
        holder.listen(1)
        port = holder.getsockname()[1]
        spec = {
            "image": busybox_ref,
            "command": ["sleep", "60"],
            "stop_timeout": 0.2,
            "ports": [{"host": port, "container": 80}],
        }
        message = _refused(shared_agent, api, 409, spec)
    assert f"{port}/tcp" in message
    # a port published by another instance is taken as well
    first = {
        "image": busybox_ref,
        "command": ["sleep", "60"],
        "stop_timeout": 0.2,
        "ports": [{"host": port, "container": 80}],
    }
    assert api.put("/v1/instances/holder", json=first).status_code == 201
    message = _refused(shared_agent, api, 409, first)
    assert "published by instance holder" in message


def test_memory_beyond_the_host(
    shared_agent: RunningAgent, api: httpx.Client, busybox_ref: str
) -> None:
    total = api.get("/v1/info").json()["memory"]["total"]
    spec = {"image": busybox_ref, "command": ["true"], "resources": {"memory_bytes": total * 2}}
    message = _refused(shared_agent, api, 422, spec)
    assert "memory_bytes" in message
    assert "more than this host's memory" in message


def test_the_client_tells_over_capacity_from_a_container_that_did_not_start(
    shared_agent: RunningAgent, busybox_ref: str
) -> None:
    # both are 422; the error's kind says which, and a scheduler acts differently on each
    before = host_traces(shared_agent)
    with shared_agent.client() as client:
        total = client.info()["memory"]["total"]
        too_big = {"image": busybox_ref, "resources": {"memory_bytes": total * 2}}
        with pytest.raises(OverCapacity, match="memory_bytes") as over:
            client.put_instance("bad-one", too_big)
        assert over.value.status == 422
        missing = {"image": busybox_ref, "command": ["/no/such/program"]}
        with pytest.raises(NotStarted, match="did not start") as failed:
            client.put_instance("bad-one", missing)
        assert failed.value.status == 422
        assert not isinstance(failed.value, OverCapacity)
    assert host_traces(shared_agent) == before


def test_an_id_reused_with_another_spec(
    shared_agent: RunningAgent, api: httpx.Client, busybox_ref: str
) -> None:
    spec = {"image": busybox_ref, "command": ["sleep", "60"], "stop_timeout": 0.2}
    created = api.put("/v1/instances/reused", json=spec)
    assert created.status_code == 201, created.text
    again = api.put("/v1/instances/reused", json=spec)
    assert again.status_code == 200
    assert again.json()["pid"] == created.json()["pid"]  # the same container, not a second
    before = host_traces(shared_agent)
    other = api.put("/v1/instances/reused", json={**spec, "command": ["sleep", "61"]})
    assert other.status_code == 409
    assert "exists with another spec" in other.json()["error"]["message"]
    assert host_traces(shared_agent) == before


def test_build_ids_are_not_instance_ids(
    shared_agent: RunningAgent, api: httpx.Client, busybox_ref: str
) -> None:
    response = api.put("/v1/instances/b-12", json={"image": busybox_ref})
    assert response.status_code == 400
    assert "build ids" in response.json()["error"]["message"]


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-wrong-token", "Basic abc"])
def test_tcp_needs_the_token(
    shared_agent: RunningAgent, busybox_ref: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    before = host_traces(shared_agent)
    with httpx.Client(base_url=shared_agent.tcp, timeout=30) as client:
        response = client.put(
            "/v1/instances/sneaky",
            json={"image": busybox_ref, "command": ["true"]},
            headers=headers,
        )
        assert response.status_code == 401
        assert "Bearer" in response.json()["error"]["message"]
        ok = client.get("/v1/info", headers={"Authorization": f"Bearer {shared_agent.token}"})
        assert ok.status_code == 200
        assert ok.json()["host"] == shared_agent.name
    assert host_traces(shared_agent) == before


def test_a_namespace_in_the_way_is_left_alone_and_its_address_given_back(
    shared_agent: RunningAgent, api: httpx.Client, busybox_ref: str
) -> None:
    # the namespace is made while the address is allocated; when it cannot be made (a
    # leftover of the same name here), the address is released and the leftover kept
    name = net.container_netns_name(f"berth-{shared_agent.name}", "bad-one")
    net.create_netns(name)
    try:
        message = _refused(shared_agent, api, 500, {"image": busybox_ref, "command": ["true"]})
        assert "already exists" in message
        assert net.netns_exists(name)
        # the container's directories, begun meanwhile, went with the failure
        assert "bad-one" not in container_names(shared_agent)
    finally:
        net.remove_netns(name)
