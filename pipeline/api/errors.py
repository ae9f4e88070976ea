"""JSON error answers shared by the REST API and the webhook endpoints.

Every error body has one shape: ``{"error": {"code": "...", "message": "..."}}``;
``code`` is stable for programs, ``message`` says what to do for people.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


class HTTPProblem(Exception):
    """Raised inside a handler to answer with a JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON error answer."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )
