"""The slash-command endpoints: ``POST /hooks/slack`` and ``POST /hooks/mattermost``.

Both verify the request before reading anything else from it (:mod:`~pipeline.chatops.
verify`; a refusal is 401 and runs nothing), parse the form body into a
:class:`~pipeline.chatops.commands.ChatRequest` and answer within the platforms' three
seconds: a usage error, an unknown command or ``help`` at once; anything else with an
immediate ephemeral acknowledgement, the command then running after the answer was sent
and its outcome posted to the request's ``response_url``.

Mount with ``routes += chatops_routes(...)`` in the control plane's app factory.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.chatops.commands import ChatReply, ChatRequest, Command, Dispatcher, Platform
from pipeline.chatops.notify import Poster
from pipeline.chatops.verify import ChatAuthError, MattermostVerifier, SlackVerifier
from pipeline.logs import get_logger

__all__ = ["MAX_BODY", "chatops_routes"]

log = get_logger("chatops")

MAX_BODY = 64 * 1024
"""Slash-command bodies are a few hundred bytes; anything this large is not one."""


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _BadRequest(f"body larger than {MAX_BODY} bytes", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _BadRequest(f"body larger than {MAX_BODY} bytes", 413)
    return body


def _chat_request(platform: Platform, form: dict[str, str]) -> ChatRequest:
    missing = [key for key in ("user_id", "team_id", "channel_id") if not form.get(key)]
    if missing:
        raise _BadRequest(f"slash command form lacks {', '.join(missing)}")
    response_url = form.get("response_url", "")
    if response_url and not response_url.startswith(("https://", "http://")):
        raise _BadRequest("response_url must be an http(s) URL")
    return ChatRequest(
        platform=platform,
        user_id=form["user_id"],
        user_name=form.get("user_name", ""),
        team_id=form["team_id"],
        channel_id=form["channel_id"],
        text=form.get("text", ""),
        command=form.get("command") or "/berth",
        response_url=response_url,
    )


def _form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest("body is not an application/x-www-form-urlencoded form") from exc
    return dict(pairs)


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def chatops_routes(
    dispatcher: Dispatcher,
    *,
    poster: Poster,
    slack: SlackVerifier | None = None,
    mattermost: MattermostVerifier | None = None,
) -> list[Route]:
    """The two slash-command routes (a platform not configured answers 404)."""

    def deferred(chat: ChatRequest, command: Command, args: list[str]) -> None:
        reply = dispatcher.run(chat, command, args)
        if not poster.post(chat.response_url, reply.to_json()):
            log.warning(
                "slash command outcome not delivered", extra={"fields": {"text": chat.text}}
            )

    def answer(chat: ChatRequest) -> Response:
        parsed = dispatcher.parse(chat)
        if isinstance(parsed, ChatReply):
            return JSONResponse(parsed.to_json())
        command, args = parsed
        if command.name == "help" or not chat.response_url:
            return JSONResponse(dispatcher.run(chat, command, args).to_json())
        ack = ChatReply(f"working on `{chat.command} {chat.text.strip()}`…")
        return JSONResponse(ack.to_json(), background=BackgroundTask(deferred, chat, command, args))

    def guarded(
        platform: Platform, check: Callable[[Request, bytes], None] | None
    ) -> Callable[[Request], object]:
        async def endpoint(request: Request) -> Response:
            if check is None:
                return _error(
                    f"{platform} slash commands are not configured (chatops/{platform})", 404
                )
            try:
                body = await _read_body(request)
                check(request, body)
                chat = _chat_request(platform, _form(body))
            except ChatAuthError as exc:
                log.warning(
                    "chat request refused",
                    extra={"fields": {"platform": platform, "why": str(exc)}},
                )
                return _error(str(exc), 401)
            except _BadRequest as exc:
                return _error(str(exc), exc.status)
            return answer(chat)

        return endpoint

    slack_check: Callable[[Request, bytes], None] | None = None
    if slack is not None:
        verifier = slack

        def slack_check(request: Request, body: bytes) -> None:
            verifier.verify(
                request.headers.get("x-slack-request-timestamp"),
                request.headers.get("x-slack-signature"),
                body,
            )

    mattermost_check: Callable[[Request, bytes], None] | None = None
    if mattermost is not None:
        token_verifier = mattermost

        def mattermost_check(request: Request, body: bytes) -> None:
            try:
                token = _form(body).get("token")
            except _BadRequest:
                token = None
            token_verifier.verify(token, request.headers.get("authorization"))

    return [
        Route("/hooks/slack", guarded("slack", slack_check), methods=["POST"]),
        Route("/hooks/mattermost", guarded("mattermost", mattermost_check), methods=["POST"]),
    ]
