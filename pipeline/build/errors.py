"""Errors of the image builder.

::

    BerthError
    └── BuildError                   a build could not be planned or run
        ├── DockerfileError          the Dockerfile is invalid or uses what berth lacks
        └── StepFailed               a RUN step exited non-zero or timed out
"""

from __future__ import annotations

from pipeline.errors import BerthError


class BuildError(BerthError):
    """A build could not be planned or executed; the message names the step."""


class DockerfileError(BuildError):
    """The Dockerfile is invalid, or uses a feature berth does not support.

    ``line`` is the 1-based line of the offending instruction (``None`` when unknown).
    """

    def __init__(self, source: str, line: int | None, message: str) -> None:
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class StepFailed(BuildError):
    """A RUN step failed: its line, command, exit code (None: timed out) and output tail."""

    def __init__(
        self, source: str, line: int, command: str, exit_code: int | None, output_tail: str
    ) -> None:
        self.source = source
        self.line = line
        self.command = command
        self.exit_code = exit_code
        self.output_tail = output_tail
        what = "timed out" if exit_code is None else f"exited with {exit_code}"
        message = f"{source}:{line}: RUN {command}: {what}"
        if output_tail:
            message += "\n" + output_tail
        super().__init__(message)
