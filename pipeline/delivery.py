"""Delivery inside ``berth serve``: promotion, rollouts, gates, chat-ops and
notifications wired together.

:func:`delivery_from_settings` builds the parts from the service config and a
:class:`DeployBackend` (the rollout engine on hosts, or :class:`SwitchBackend` which
switches releases at once when there are none); :class:`Delivery` starts and stops
their threads with the control plane:

- the gate worker (gate runs owed after a restart are queued first);
- the rollout engine's reconcile loop, when the backend has one;
- an APScheduler with two jobs: :class:`ReleaseFeeder` (a release a build just created
  enters the first environment) and the chat notifications' event watcher.

Nothing starts at construction; :meth:`Delivery.start` does.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from starlette.routing import BaseRoute

from pipeline.api.deploy import DeployAPI
from pipeline.chatops.commands import (
    ChatContext,
    ChatReply,
    CommandRegistry,
    Dispatcher,
    default_registry,
)
from pipeline.chatops.notify import EventWatcher, NotificationTarget, Notifier, Poster
from pipeline.chatops.routes import chatops_routes
from pipeline.chatops.verify import MattermostVerifier, SlackVerifier
from pipeline.errors import BerthError
from pipeline.logs import get_logger
from pipeline.promote.gates import GateRunner
from pipeline.promote.rollouts import EntryPoints, RolloutControl, StaticEntryPoints, SwitchRollouts
from pipeline.promote.service import PromotionService
from pipeline.promote.worker import GateWorker
from pipeline.secrets import Secrets
from pipeline.settings import Settings
from pipeline.store import Release, Store
from runners.errors import RunnerError

__all__ = [
    "Delivery",
    "DeployBackend",
    "ReleaseFeeder",
    "SwitchBackend",
    "delivery_from_settings",
    "register_rollout_commands",
]

log = get_logger("delivery")

FEED_INTERVAL = 0.5
"""Seconds between looks for new releases (a release enters dev within about this)."""
NOTIFY_INTERVAL = 3.0
ENGINE_INTERVAL = 1.0


class DeployBackend(RolloutControl, EntryPoints, Protocol):
    """Starts rollouts, takes people's commands about them, and knows entry addresses."""

    def start(self, app: str, env: str, release_id: int, *, actor: str, source: str) -> bool: ...


class Engine(Protocol):
    """A backend with a reconcile loop of its own (the rollout engine)."""

    def start_background(self, interval: float) -> None: ...

    def stop(self) -> None: ...


class SwitchBackend(SwitchRollouts):
    """Releases become stable at once, with fixed entry addresses (none by default):
    a control plane without hosts, and tests that bring their own target servers."""

    def __init__(self, store: Store, urls: Mapping[tuple[str, str], str] | None = None) -> None:
        super().__init__(store)
        self._urls = StaticEntryPoints(urls or {})

    def url(self, app: str, env: str) -> str | None:
        return self._urls.url(app, env)


class ReleaseFeeder:
    """Sends each new release into the first environment, exactly once.

    It follows ``release.created`` events with a cursor; on start it also looks at each
    app's newest release, which catches a release created while the control plane was
    down. A release that already has a ``release.promoted`` event in the first
    environment was sent before and is left alone.
    """

    def __init__(self, service: PromotionService) -> None:
        self._service = service
        self._store = service.store
        self._first = service.settings.environments[0].name
        newest = self._store.list_events(limit=1, newest_first=True)
        self._cursor = newest[0].id if newest else 0

    def catch_up(self) -> int:
        """Feed each app's newest release if it was never sent; return how many."""
        fed = 0
        for app in self._service.settings.apps:
            releases = self._store.list_releases(app.name, limit=1)
            if releases and self._feed(app.name, releases[0].id):
                fed += 1
        return fed

    def poll_once(self) -> int:
        """Feed the releases created since the last call; return how many were fed."""
        fed = 0
        for event in self._store.list_events(
            action="release.created", after_id=self._cursor, limit=100
        ):
            self._cursor = event.id
            if event.app is not None and event.release_id is not None:
                fed += self._feed(event.app, event.release_id)
        return fed

    def _feed(self, app: str, release_id: int) -> bool:
        sent = self._store.list_events(
            app=app, env=self._first, action="release.promoted", release_id=release_id, limit=1
        )
        if sent:
            return False
        try:
            return self._service.release_created(app, release_id) is not None
        except (BerthError, RunnerError) as exc:
            log.warning(
                "release could not enter the first environment",
                extra={"fields": {"app": app, "release": release_id, "error": str(exc)}},
            )
            return False


# --- chat commands of the rollout ------------------------------------------------------


def register_rollout_commands(registry: CommandRegistry, control: RolloutControl) -> None:
    """Add ``rollback``, ``abort``, ``resume`` and ``retry`` to the chat dispatcher."""

    def rollback(ctx: ChatContext, args: Sequence[str]) -> ChatReply:
        actor = ctx.require_actor()
        app, env = args[0], args[1]
        ctx.service.require_operator(actor, app, env, "roll back")
        to: int | None = None
        if len(args) > 2:
            text = args[2].removeprefix("#")
            if not text.isdigit():
                return ChatReply(f"release must be a number (got {args[2]!r})")
            to = int(text)
            ctx.service.require_rollback_target(app, env, to)
        control.rollback(app, env, to=to, actor=actor.identity, source=ctx.source)
        now = ctx.service.store.get_environment(app, env).stable_release_id
        return ChatReply(
            f"{app}/{env} rolled back to release {now} by {actor.identity}; the environment "
            f"is pinned until someone promotes",
            in_channel=True,
        )

    def command(verb: str, done: str) -> Callable[[ChatContext, Sequence[str]], ChatReply]:
        def handler(ctx: ChatContext, args: Sequence[str]) -> ChatReply:
            actor = ctx.require_actor()
            app, env = args[0], args[1]
            ctx.service.require_operator(actor, app, env, verb)
            getattr(control, verb)(app, env, actor=actor.identity, source=ctx.source)
            return ChatReply(f"{app}/{env}: rollout {done} by {actor.identity}", in_channel=True)

        return handler

    registry.register(
        "rollback",
        rollback,
        usage="rollback APP ENV [RELEASE]",
        summary="Return ENV to its previous (or the named) release at once, and pin it.",
        min_args=2,
        max_args=3,
    )
    for verb, done, summary in (
        ("abort", "aborted", "Abort the rollout in ENV: back to the stable release."),
        ("resume", "resumed", "Continue the rollout in ENV past an indefinite pause."),
        ("retry", "retried", "Start the aborted rollout in ENV again."),
    ):
        registry.register(
            verb, command(verb, done), usage=f"{verb} APP ENV", summary=summary, min_args=2
        )


# --- the whole ------------------------------------------------------------------------


@dataclass
class Delivery:
    """The delivery parts of one control plane (see the module docstring)."""

    service: PromotionService
    backend: DeployBackend
    api: DeployAPI
    dispatcher: Dispatcher
    gates: GateWorker
    feeder: ReleaseFeeder
    watcher: EventWatcher | None
    notifier: Notifier | None
    poster: Poster
    slack: SlackVerifier | None = None
    mattermost: MattermostVerifier | None = None
    engine: Engine | None = None
    _scheduler: BackgroundScheduler | None = field(default=None, init=False)

    def routes(self) -> list[BaseRoute]:
        """``POST /hooks/slack`` and ``POST /hooks/mattermost``."""
        return list(
            chatops_routes(
                self.dispatcher, poster=self.poster, slack=self.slack, mattermost=self.mattermost
            )
        )

    def start(self) -> None:
        """Start the gate worker, the engine, the notifier and the scheduled jobs."""
        self.service.use_scheduler(self.gates.submit)
        self.gates.start(self.service.pending_gates())
        if self.engine is not None:
            self.engine.start_background(ENGINE_INTERVAL)
        if self.notifier is not None:
            self.notifier.start()
        self.feeder.catch_up()
        scheduler = BackgroundScheduler(timezone=datetime.UTC)
        now = datetime.datetime.now(datetime.UTC)
        scheduler.add_job(
            self.feeder.poll_once,
            "interval",
            seconds=FEED_INTERVAL,
            id="feed-releases",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
        if self.watcher is not None:
            scheduler.add_job(
                self.watcher.poll_once,
                "interval",
                seconds=NOTIFY_INTERVAL,
                id="notify",
                next_run_time=now,
                max_instances=1,
                coalesce=True,
            )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop everything :meth:`start` started; owed gate runs stay owed in the store."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        self._scheduler = None
        self.gates.stop()
        if self.engine is not None:
            self.engine.stop()
        if self.notifier is not None:
            self.notifier.stop()
        self.poster.close()


def _unmasked(text: str) -> str:
    return text


def delivery_from_settings(
    settings: Settings,
    secrets: Secrets,
    store: Store,
    *,
    backend: DeployBackend,
    gate_runner: GateRunner,
    image_reference: Callable[[Release], str] | None = None,
    mask: Callable[[str], str] | None = None,
    engine: Engine | None = None,
    poster: Poster | None = None,
) -> Delivery:
    """Build the delivery parts from the service config (see the module docstring)."""
    service = PromotionService(
        store,
        settings,
        rollouts=backend,
        gate_runner=gate_runner,
        entry_points=backend,
        image_reference=image_reference,
        mask=mask or _unmasked,
    )
    registry = default_registry()
    register_rollout_commands(registry, backend)
    chat = settings.chatops
    post = poster or Poster()
    targets = [
        NotificationTarget(
            secrets[n.url].reveal(),
            apps=frozenset(n.apps) or None,
            envs=frozenset(n.environments) or None,
        )
        for n in chat.notifications
    ]
    notifier = Notifier(post) if targets else None
    return Delivery(
        service=service,
        backend=backend,
        api=DeployAPI(service, backend, backend),
        dispatcher=Dispatcher(service, registry),
        gates=GateWorker(service.run_gate),
        feeder=ReleaseFeeder(service),
        watcher=EventWatcher(store, notifier, targets) if notifier is not None else None,
        notifier=notifier,
        poster=post,
        slack=SlackVerifier(secrets[chat.slack.signing_secret]) if chat.slack else None,
        mattermost=MattermostVerifier(secrets[chat.mattermost.token]) if chat.mattermost else None,
        engine=engine,
    )
