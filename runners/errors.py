"""Errors raised by the host-side package.

Every failure that ``runners`` reports is one of these::

    RunnerError                      anything berth's host side could not do
    ├── SubprocessError              a command exited non-zero (argv, code, stderr tail)
    ├── OCIError                     image-format problems
    │   ├── ReferenceError_          an image reference that does not parse
    │   ├── DigestError              a digest that is malformed or does not match content
    │   ├── ManifestError            a manifest, index or config that is not valid
    │   └── LayerError               a layer tar that is unsafe or corrupt
    ├── RegistryError                a registry answered with an error or could not be reached
    │   ├── RegistryAuthError        credentials missing or refused (401/403)
    │   ├── RegistryNotFound         the repository, tag or blob does not exist
    │   └── RegistryUnavailable      unreachable or 5xx after the retries; may work later
    ├── RuntimeFailure               a container could not be created, started or stopped
    └── NetworkError                 netlink / nftables work failed

The CLI shows ``str(error)``; each message says what failed, where, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence


class RunnerError(Exception):
    """Base of every error the ``runners`` package raises on purpose."""


class SubprocessError(RunnerError):
    """A command berth ran exited non-zero; carries argv, exit code and stderr tail."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-20:])
        message = f"{' '.join(self.argv)}: exited with {returncode}"
        if self.stderr_tail:
            message += f"\n{self.stderr_tail}"
        super().__init__(message)


class OCIError(RunnerError):
    """An image, manifest, digest or reference is not valid."""


class ReferenceError_(OCIError):
    """An image reference (``host/repo:tag@digest``) does not parse."""


class DigestError(OCIError):
    """A digest is malformed, uses an unknown algorithm, or does not match its content."""


class ManifestError(OCIError):
    """A manifest, index or image config is malformed or of an unsupported type."""


class LayerError(OCIError):
    """A layer archive is corrupt or tries to write outside its directory."""


class RegistryError(RunnerError):
    """A registry could not be reached or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryAuthError(RegistryError):
    """The registry refused the credentials, or none were configured for it."""


class RegistryNotFound(RegistryError):
    """The repository, tag, manifest or blob does not exist in the registry."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached, or kept failing (5xx), after bounded retries."""


class RuntimeFailure(RunnerError):
    """A container could not be created, started, stopped or inspected."""


class NetworkError(RunnerError):
    """Creating or removing a bridge, veth, namespace, address or nftables rule failed."""
