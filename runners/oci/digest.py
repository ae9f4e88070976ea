"""Content digests (``algorithm:hex``) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO

from runners.errors import DigestError

# algorithm and encoded parts, per the image spec's digest grammar; berth computes sha256
# and verifies sha256 and sha512.
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}

CHUNK = 1 << 20


@dataclass(frozen=True, order=True)
class Digest:
    """A validated digest such as ``sha256:9f86d0…``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate ``text``; raise :class:`DigestError` naming what is wrong."""
        match = _DIGEST_RE.fullmatch(text)
        if not match:
            raise DigestError(f"invalid digest {text!r}: expected ALGORITHM:HEX")
        algorithm, encoded = match.groups()
        length = _HEX_LENGTH.get(algorithm)
        if length is None:
            raise DigestError(f"unsupported digest algorithm {algorithm!r} in {text!r}")
        if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
            raise DigestError(
                f"invalid {algorithm} digest {text!r}: expected {length} lowercase hex digits"
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def of_stream(cls, stream: BinaryIO, algorithm: str = "sha256") -> tuple[Digest, int]:
        """The digest and size of everything left in ``stream``, read in 1 MiB chunks."""
        hasher = hashlib.new(algorithm)
        size = 0
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
        return cls(algorithm, hasher.hexdigest()), size

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
