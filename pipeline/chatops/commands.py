"""One dispatcher for every chat platform's slash commands, extensible by registration.

``/berth promote demo perf-test`` arrives as a :class:`ChatRequest` (platform, user,
team, channel, text). :class:`Dispatcher` maps the chat user to a berth identity
(``chatops.slack.users`` / ``chatops.mattermost.users``), finds the command in its
:class:`CommandRegistry` and runs it; the answer is a :class:`ChatReply`.

Built in: ``status [APP]``, ``promote APP ENV [RELEASE]``, ``approve APP ENV``,
``history APP ENV``, ``help``. Other parts of berth add theirs (the rollout engine adds
``rollback`` and ``abort``)::

    registry.register("rollback", rollback_handler, usage="rollback APP ENV",
                      summary="Return ENV to its previous release.", min_args=2)

Every command a chat user runs is recorded by the operation it calls, with the source
``chat:<user>@<team>/<channel>`` and the chat user, channel and team in the detail.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import BerthError
from pipeline.logs import get_logger
from pipeline.promote.errors import PromotionRefused
from pipeline.promote.policy import Actor
from pipeline.promote.service import PromotionService
from pipeline.promote.views import history, render_history, render_status, status
from pipeline.settings import Settings
from pipeline.store import chat_source
from runners.errors import RunnerError

__all__ = [
    "ChatContext",
    "ChatReply",
    "ChatRequest",
    "Command",
    "CommandRegistry",
    "Dispatcher",
    "chat_identities",
    "default_registry",
]

log = get_logger("chatops")

Platform = Literal["slack", "mattermost"]


@dataclass(frozen=True)
class ChatRequest:
    """A slash command as the platform sent it."""

    platform: Platform
    user_id: str
    user_name: str
    team_id: str
    channel_id: str
    text: str
    command: str = "/berth"
    response_url: str = ""


@dataclass(frozen=True)
class ChatReply:
    """An answer: ``in_channel`` for everyone to see, ``ephemeral`` for the asker only."""

    text: str
    in_channel: bool = False

    def to_json(self) -> dict[str, Any]:
        """The Slack / Mattermost slash-command response body."""
        return {
            "response_type": "in_channel" if self.in_channel else "ephemeral",
            "text": self.text,
        }


@dataclass(frozen=True)
class ChatContext:
    """What a command handler gets: the request, who it is in berth, and the service."""

    request: ChatRequest
    actor: Actor | None
    service: PromotionService

    @property
    def source(self) -> str:
        r = self.request
        return chat_source(r.user_name or r.user_id, r.team_id, r.channel_id)

    @property
    def detail(self) -> dict[str, str]:
        """The chat facts recorded on every event this command causes."""
        r = self.request
        return {
            "chat": r.platform,
            "chat_user": r.user_id,
            "chat_user_name": r.user_name,
            "channel": r.channel_id,
            "team": r.team_id,
        }

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise PromotionRefused(_unmapped(self.request), refusal="forbidden")
        return self.actor


Handler = Callable[[ChatContext, Sequence[str]], ChatReply]


@dataclass(frozen=True)
class Command:
    """A registered command: its handler, how it is used, and its argument count."""

    name: str
    handler: Handler
    usage: str
    summary: str
    min_args: int = 0
    max_args: int = 0
    needs_identity: bool = True


class CommandRegistry:
    """Commands by name."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        usage: str,
        summary: str,
        min_args: int = 0,
        max_args: int | None = None,
        needs_identity: bool = True,
    ) -> None:
        """Add a command (``max_args`` defaults to ``min_args``)."""
        if name in self._commands:
            raise ValueError(f"chat command {name!r} is registered twice")
        self._commands[name] = Command(
            name,
            handler,
            usage,
            summary,
            min_args,
            min_args if max_args is None else max_args,
            needs_identity,
        )

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self._commands.values(), key=lambda c: c.name))


def chat_identities(settings: Settings, platform: Platform) -> Mapping[str, str]:
    """Chat user id -> berth identity, from the service config."""
    chat = settings.chatops.slack if platform == "slack" else settings.chatops.mattermost
    return dict(chat.users) if chat is not None else {}


class Dispatcher:
    """Parses and runs slash commands (see the module docstring)."""

    def __init__(self, service: PromotionService, registry: CommandRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else default_registry()
        tokens = {t.name: frozenset(t.scopes) for t in service.settings.api_tokens}
        self._scopes = tokens

    def actor(self, request: ChatRequest) -> Actor | None:
        """The berth identity of the chat user: scopes of the API token of the same name,
        else ``deploy`` (being mapped is the grant; environments' approver lists still
        decide who may approve and promote where)."""
        identity = chat_identities(self.service.settings, request.platform).get(request.user_id)
        if identity is None:
            return None
        return Actor(identity, self._scopes.get(identity, frozenset({"deploy"})))

    def parse(self, request: ChatRequest) -> tuple[Command, list[str]] | ChatReply:
        """The command and its arguments, or the reply explaining what is wrong."""
        try:
            words = shlex.split(request.text)
        except ValueError as exc:
            return ChatReply(f"cannot read that command: {exc}")
        if not words:
            words = ["help"]
        name, args = words[0].lower(), words[1:]
        command = self.registry.get(name)
        if command is None:
            known = ", ".join(c.name for c in self.registry)
            return ChatReply(f"unknown command {name!r}; try: {known}")
        if not command.min_args <= len(args) <= command.max_args:
            return ChatReply(f"usage: {request.command} {command.usage}")
        if command.needs_identity and self.actor(request) is None:
            return ChatReply(_unmapped(request))
        return command, args

    def run(self, request: ChatRequest, command: Command, args: Sequence[str]) -> ChatReply:
        """Run a parsed command; berth errors become replies, never exceptions."""
        context = ChatContext(request, self.actor(request), self.service)
        try:
            return command.handler(context, args)
        except (BerthError, RunnerError) as exc:
            return ChatReply(str(exc))

    def handle(self, request: ChatRequest) -> ChatReply:
        """Parse and run in one go."""
        parsed = self.parse(request)
        if isinstance(parsed, ChatReply):
            return parsed
        return self.run(request, *parsed)


def _unmapped(request: ChatRequest) -> str:
    return (
        f"your {request.platform} user {request.user_id} is not mapped to a berth identity;"
        f" ask an admin to add it to chatops/{request.platform}/users"
    )


# --- the built-in commands ------------------------------------------------------------


def _status(ctx: ChatContext, args: Sequence[str]) -> ChatReply:
    # an unknown app is refused by status() itself (PromotionService.facts)
    rows = status(ctx.service, args[0] if args else None)
    return ChatReply(render_status(rows) or "no apps are watched")


def _history(ctx: ChatContext, args: Sequence[str]) -> ChatReply:
    entries = history(ctx.service, args[0], args[1], limit=10)
    return ChatReply(f"history of {args[0]} in {args[1]}:\n" + render_history(entries))


def _release_arg(args: Sequence[str]) -> int | None:
    if len(args) < 3:
        return None
    text = args[2].removeprefix("#")
    if not text.isdigit():
        raise PromotionRefused(f"release must be a number (got {args[2]!r})", refusal="invalid")
    return int(text)


def _promote(ctx: ChatContext, args: Sequence[str]) -> ChatReply:
    decision = ctx.service.promote(
        ctx.require_actor(),
        args[0],
        args[1],
        release=_release_arg(args),
        source=ctx.source,
        detail=ctx.detail,
    )
    return ChatReply(f"{decision.message} (by {ctx.require_actor().identity})", in_channel=True)


def _approve(ctx: ChatContext, args: Sequence[str]) -> ChatReply:
    decision = ctx.service.approve(
        ctx.require_actor(),
        args[0],
        args[1],
        release=_release_arg(args),
        source=ctx.source,
        detail=ctx.detail,
    )
    return ChatReply(decision.message, in_channel=True)


def default_registry() -> CommandRegistry:
    """A registry with the built-in commands."""
    registry = CommandRegistry()
    registry.register(
        "status",
        _status,
        usage="status [APP]",
        summary="Show what runs where, gates, approvals and locks.",
        max_args=1,
    )
    registry.register(
        "promote",
        _promote,
        usage="promote APP ENV [RELEASE]",
        summary="Move the release that passed the previous environment into ENV.",
        min_args=2,
        max_args=3,
    )
    registry.register(
        "approve",
        _approve,
        usage="approve APP ENV [RELEASE]",
        summary="Approve the release running in ENV.",
        min_args=2,
        max_args=3,
    )
    registry.register(
        "history",
        _history,
        usage="history APP ENV",
        summary="List what ran in ENV, who promoted it and how it ended.",
        min_args=2,
    )

    def help_handler(ctx: ChatContext, args: Sequence[str]) -> ChatReply:
        lines = [f"{ctx.request.command} {c.usage} - {c.summary}" for c in registry]
        return ChatReply("\n".join(lines))

    registry.register(
        "help",
        help_handler,
        usage="help",
        summary="List the commands.",
        needs_identity=False,
    )
    return registry
