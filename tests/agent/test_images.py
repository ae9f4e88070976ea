"""Images on a host through a real agent: pull, list, pin, collect — and the lock that
keeps a collection from removing an image a start is about to use."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from runners.agent.agent import ImageUse
from runners.agent.errors import AgentError
from runners.oci.client import RegistryClient
from runners.oci.layout import OCILayout
from runners.oci.reference import Reference
from tests.agent.conftest import Agents
from tests.helpers.ociimage import write_oci_layout

SLEEPER = ["sh", "-c", "exec sleep 600"]


def _push_other(busybox_ref: str, root: Path) -> str:
    """A second image in the same registry: busybox (the same base layer) plus a file."""
    layout = root / "other-layout"
    write_oci_layout(layout, "v1", {"other.txt": b"other\n"}, busybox=True)
    ref = Reference.parse(busybox_ref.replace("test/busybox", "test/other"))
    with RegistryClient() as client:
        client.push_image(OCILayout.open(layout), ref, tag="v1")
    return str(ref)


@pytest.mark.privileged
def test_pull_list_pin_and_collect(agents: Agents, busybox_ref: str, tmp_path: Path) -> None:
    agent = agents.start()
    other_ref = _push_other(busybox_ref, tmp_path)
    with agent.client() as client:
        busy = client.pull(busybox_ref)["digest"]
        other = client.pull(other_ref)["digest"]
        listing = {image["digest"]: image for image in client.images()}
        assert set(listing) == {busy, other}
        assert listing[other]["references"] == [other_ref]
        assert all(image["size"] > 0 for image in listing.values())
        assert not any(image["pinned"] or image["in_use"] for image in listing.values())

        spec = {"image": busybox_ref, "command": SLEEPER, "stop_timeout": 0.2}
        client.put_instance("img-one", spec)
        # a start of an image the host knows does not rewrite the image index
        index = agent.data / "images.json"
        before = index.stat()
        client.put_instance("img-two", spec)
        after = index.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

        client.pin(other)
        assert client.gc()["images"] == []  # one is in use, the other pinned
        client.unpin(other)
        with pytest.raises(AgentError, match="not pinned") as caught:
            client.unpin(other)
        assert caught.value.status == 404
        removed = client.gc()
        assert removed["images"] == [other]
        assert other in removed["blobs"]
        listing = {image["digest"]: image for image in client.images()}
        assert list(listing) == [busy]
        assert listing[busy]["in_use"]
        # the shared base layer stayed: the running containers still read it
        assert client.exec("img-one", ["cat", "/etc/passwd"])["exit_code"] == 0

        client.delete_instance("img-one")
        client.delete_instance("img-two")
        removed = client.gc()
        assert removed["images"] == [busy]
        assert removed["layers"], removed
        assert client.images() == []
        assert not any((agent.data / "store").rglob("busybox"))
        # collected images come back by their reference
        again = client.put_instance("img-three", spec)
        assert again["state"] == "running"
        client.delete_instance("img-three")


@pytest.mark.privileged
@pytest.mark.parametrize(
    ("digest", "status"),
    [("sha256:abc", 400), ("md5:" + "0" * 32, 400), ("sha256:" + "G" * 64, 400)],
)
def test_bad_pins_are_refused(agents: Agents, digest: str, status: int) -> None:
    agent = agents.start()
    with agent.client() as client:
        with pytest.raises(AgentError) as caught:
            client.pin(digest)
        assert caught.value.status == status
        assert not (agent.data / "pins.json").exists()


@pytest.mark.unit
def test_a_collection_waits_for_running_users_and_holds_back_new_ones() -> None:
    use = ImageUse()
    order: list[str] = []
    first_in, release_first = threading.Event(), threading.Event()

    def first() -> None:
        with use.shared():
            order.append("first in")
            first_in.set()
            assert release_first.wait(30)
            order.append("first out")

    def collect() -> None:
        with use.exclusive():
            order.append("collect")

    def late() -> None:
        with use.shared():
            order.append("late")

    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(first)
        assert first_in.wait(30)
        collecting = pool.submit(collect)
        # the collection waits for the user already in; give it every chance not to
        wait([collecting], timeout=0.3)
        arriving = pool.submit(late)
        wait([arriving], timeout=0.3)
        assert order == ["first in"]
        release_first.set()
        for future in (running, collecting, arriving):
            future.result(timeout=30)
    assert order == ["first in", "first out", "collect", "late"]
