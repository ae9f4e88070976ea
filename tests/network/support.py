"""Real TCP servers and clients in network namespaces, for the networking tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field

from runners.network import in_netns, netns_path

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - listeners inside test namespaces only

CLIENT = (
    "import socket,sys\n"
    "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5)\n"
    "sys.stdout.write(s.recv(100).decode())\n"
)


def unique(prefix: str) -> str:
    """A short name unused by any other test run: ``prefix`` + 6 hex digits."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@dataclass
class Responder:
    """A TCP server in a namespace that answers each connection with ``reply``, then closes it.

    It serves at most ``limit`` connections and stops when closed.
    """

    sock: socket.socket
    reply: bytes
    limit: int = 20
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(self.limit):
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.reply)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


def respond_in(netns: str | None, address: str, port: int, reply: bytes) -> Responder:
    """Listen on ``address:port`` inside ``netns`` (a name or None for this namespace)."""
    path = None if netns is None else netns_path(netns)
    sock = in_netns(path, lambda: socket.create_server((address, port)))
    sock.settimeout(None)
    return Responder(sock, reply)


def fetch_from(netns: str | None, address: str, port: int) -> str:
    """Connect from inside ``netns`` with a separate Python process; return what came back."""
    argv = [sys.executable, "-c", CLIENT, address, str(port)]
    if netns is not None:
        argv = ["nsenter", f"--net={netns_path(netns)}", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if done.returncode != 0:
        return f"FAILED({done.returncode}): {done.stderr.strip().splitlines()[-1:]}"
    return done.stdout


def leftovers(marker: str) -> list[str]:
    """Namespaces, links (here) and nft tables whose names contain ``marker``."""
    found = []
    for argv in (["ip", "netns", "list"], ["ip", "-o", "link"], ["nft", "list", "tables"]):
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        found += [f"{argv[0]} {argv[-1]}: {line}" for line in out.splitlines() if marker in line]
    return found


def _checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def send_raw_udp(
    netns: str, ifname: str, dst_mac: str, src_ip: str, dst_ip: str, port: int, payload: bytes
) -> None:
    """Put one hand-made UDP datagram on ``ifname`` inside ``netns``, routing bypassed.

    What a container with CAP_NET_RAW can do: send to any address, 127.0.0.1 included,
    straight to the host's bridge.
    """
    import ipaddress
    import struct

    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
            ipaddress.IPv4Address(src_ip).packed, ipaddress.IPv4Address(dst_ip).packed,
        )
    )  # fmt: skip
    ip[10:12] = _checksum(bytes(ip)).to_bytes(2, "big")

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
            raw.bind((ifname, 0))
            source_mac = raw.getsockname()[4]
            frame = bytes.fromhex(dst_mac.replace(":", "")) + source_mac + b"\x08\x00"
            raw.send(frame + bytes(ip) + udp)

    in_netns(netns_path(netns), send)
