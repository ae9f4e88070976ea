"""``berth up`` and ``berth down``: the whole flow on one machine, for a newcomer.

``berth up`` checks root and the tools, brings up the simulated cluster of the config
(its agents trusting the embedded registry on the cluster's gateway address), seeds the
demo app's git repository from ``deploy/demo/`` when it is absent, makes the offline
busybox base image, creates the API token file, starts ``berth serve`` as a child
process (its log in the data directory), waits until the first release answers in the
first environment and prints what to try next. It runs until Ctrl-C, SIGTERM or
``berth down``; then it stops ``berth serve``, removes the environments' router tables
and takes the cluster down, so no namespace, mount, process or nftables table is left.

Its pid is kept in ``DATA/up.json``; ``berth down`` signals that process, or cleans up
itself when the recorded process is gone (after a crash or ``kill -9``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import httpx

from pipeline.errors import BerthError

if TYPE_CHECKING:
    from pipeline.cli.apiclient import APIClient
    from pipeline.settings import Settings

STATE_FILE = "up.json"
SERVE_LOG = "serve.log"
# the directory `berth cluster`, `berth run --host hN` and `berth ps` look in by default
CLUSTER_DIR = "clusters/local"
TOOLS = ("git", "runc", "nft", "nsenter")
BUSYBOX = Path("/bin/busybox")
POLL = 0.5
STOP_TIMEOUT = 60.0
DEFAULT_TIMEOUT = 300.0
SETTLED_GRACE = 60.0
"""Seconds a settled release may take to answer before berth up says why it does not."""


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived: unwind to the clean-up, wherever ``berth up`` was.

    A :class:`BaseException` so that no ``except Exception`` on the way swallows it."""


@dataclass(frozen=True)
class QuickStart:
    """Where ``berth up`` keeps what it makes, all under the config's data directory."""

    config: Path
    data_dir: Path
    cache_dir: Path

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / CLUSTER_DIR

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def serve_log(self) -> Path:
        return self.data_dir / SERVE_LOG


def default_demo_dir() -> Path:
    """``deploy/demo/`` of the checkout berth runs from."""
    return Path(__file__).resolve().parents[2] / "deploy" / "demo"


def missing_tools() -> list[str]:
    """The programs ``berth up`` needs that are not installed."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not BUSYBOX.is_file():
        missing.append(f"{BUSYBOX} (busybox-static)")
    return missing


def untraversable(directory: Path) -> list[Path]:
    """Ancestors of ``directory`` others may not enter: the containers' root user is an
    unprivileged id on the host and must reach the image layers below it."""
    return [
        parent
        for parent in [*reversed(directory.absolute().parents), directory.absolute()]
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH
    ]


def next_steps(
    *,
    berth: str,
    server: str,
    token_file: Path | None,
    app: str,
    repo: Path | None,
    urls: Sequence[tuple[str, str | None]],
    first: str,
    later: Sequence[str],
) -> str:
    """What to try once the first release runs: URLs, the CLI's variables, commands."""
    lines = ["", f"berth is up. Dashboard: {server}/"]
    if token_file is not None:
        lines.append(f"  sign in with the API token in {token_file}  (cat {token_file})")
    lines += ["", f"{app} per environment (berth url {app} ENV):"]
    width = max(len(env) for env, _ in urls)
    lines += [f"  {env:<{width}}  {url or '(no release yet)'}" for env, url in urls]
    lines += ["", "In another terminal, point the CLI at this control plane:"]
    lines.append(f"  export BERTH_SERVER={server}")
    if token_file is not None:
        lines.append(f"  export BERTH_TOKEN=$(cat {token_file})")
    lines += ["", "Then try:"]
    lines.append(f"  {berth} status")
    if repo is not None:
        lines.append(
            f"  cd {repo} && sed -i 's/v1/v2/g' www/index.html && git commit -qam 'demo v2' && cd -"
        )
    lines.append(f"  {berth} watch {app} {first}")
    if later:
        lines.append(f"  {berth} promote {app} --to {later[0]}")
    approvals = [env for env in later[1:] if env.startswith("pre")] or list(later[-1:])
    for env in approvals[:1]:
        lines.append(f"  {berth} approve {app} {env}")
    lines.append(f"  {berth} rollback {app} {first}")
    lines += ["", f"Stop everything with Ctrl-C here, or {berth} down in another terminal."]
    return "\n".join(lines)


def berth_program() -> str:
    """``berth`` when it is on PATH, else the path of this installation's script."""
    if shutil.which("berth") is not None:
        return "berth"
    script = Path(sys.executable).parent / "berth"
    return str(script) if script.is_file() else "berth"


def _say(message: str) -> None:
    click.echo(f"berth up: {message}")


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        raise BerthError(f"{what}: {' '.join(argv)} exited with {result.returncode}:\n{tail}")
    return result.stdout


def seed_repo(source: Path, repo: Path) -> None:
    """A new git repository at ``repo`` with ``source``'s files in one commit, "demo v1"."""
    if not (source / "Dockerfile").is_file():
        raise BerthError(f"{source}: no demo app there (no Dockerfile); pass --demo DIR")
    shutil.copytree(source, repo)
    what = f"seeding the demo repository {repo}"
    _run(["git", "init", "-q", "-b", "main"], what, repo)
    _run(["git", "add", "-A"], what, repo)
    identity = ["-c", "user.name=berth quick start", "-c", "user.email=berth@localhost"]
    _run(["git", *identity, "commit", "-q", "-m", "demo v1"], what, repo)


def write_token_file(path: Path) -> None:
    """A random API token in a new file only root may read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")


def token_files(settings: Settings) -> list[Path]:
    """The files the config's API tokens are read from."""
    return [t.token.file for t in settings.api_tokens if isinstance(t.token.file, Path)]


# --- the state file and signals ------------------------------------------------------


def _start_time(pid: int) -> int | None:
    from runners.cluster import process_start_time

    return process_start_time(pid)


def write_state(quick: QuickStart, serve_pid: int | None) -> None:
    state = {
        "pid": os.getpid(),
        "start_time": _start_time(os.getpid()),
        "serve_pid": serve_pid,
        "serve_start_time": None if serve_pid is None else _start_time(serve_pid),
        "config": str(quick.config),
    }
    tmp = quick.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state) + "\n")
    tmp.replace(quick.state_file)


def read_state(quick: QuickStart) -> dict[str, Any] | None:
    try:
        state = json.loads(quick.state_file.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


class _Signals:
    """SIGINT/SIGTERM raise :class:`Stopped` once; during clean-up they are only noted."""

    def __init__(self) -> None:
        self.armed = True
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False
            raise Stopped(signal.Signals(signum).name)


# --- serve, and waiting for the first release ------------------------------------------


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_serve(quick: QuickStart) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "pipeline.cli.main", "serve",
        "--config", str(quick.config),
        "--cluster-dir", str(quick.cluster_dir),
        "--cache-dir", str(quick.cache_dir),
        "--graceful-timeout", "10",
    ]  # fmt: skip
    with open(quick.serve_log, "ab") as log:
        # its own session: Ctrl-C reaches berth up, which stops serve in order
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )


def stop_serve(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _polls(deadline: float) -> Iterator[None]:
    while time.monotonic() < deadline:
        yield
        time.sleep(POLL)


@dataclass(frozen=True)
class Answer:
    """The app's entry answered: its URL and the start of the page."""

    url: str
    text: str

    @property
    def title(self) -> str:
        start, end = self.text.find("<title>"), self.text.find("</title>")
        if 0 <= start < end:
            return self.text[start + len("<title>") : end].strip()
        return (self.text.strip().splitlines() or [""])[0][:80]


def _alive(proc: subprocess.Popen[bytes], quick: QuickStart) -> None:
    if proc.poll() is not None:
        raise BerthError(
            f"berth serve exited with {proc.returncode}; its log ({quick.serve_log}) ends "
            f"with:\n{_tail(quick.serve_log)}"
        )


def _failed_build(client: APIClient, app: str) -> str | None:
    builds = client.get("/builds", app=app, limit=1)["builds"]
    if builds and builds[0]["state"] in ("failed", "cancelled"):
        build = builds[0]
        return (
            f"build {build['ref']} of {app} ({build['commit'][:12]}) {build['state']}: "
            f"{build['reason']}; see berth logs {build['ref']}"
        )
    return None


def wait_for_first_release(
    client: APIClient,
    proc: subprocess.Popen[bytes],
    quick: QuickStart,
    *,
    app: str,
    env: str,
    timeout: float,
) -> Answer:
    """Wait until ``app`` has a stable release in ``env`` and its entry answers 200."""
    from pipeline.errors import APIError

    deadline = time.monotonic() + timeout
    last = "berth serve is starting"
    settled_since: float | None = None
    with httpx.Client(timeout=3.0, trust_env=False) as web:
        for _ in _polls(deadline):
            if settled_since is not None and time.monotonic() - settled_since > SETTLED_GRACE:
                raise BerthError(
                    f"{app} has a release recorded as running in {env}, but it does not answer "
                    f"on this new cluster ({last}): berth serve "
                    "does not yet restart a settled environment's release on fresh hosts. "
                    f"Make a new commit in the app's repository, or start over by moving "
                    f"{quick.data_dir / 'berth.db'} away"
                )
            _alive(proc, quick)
            try:
                failure = _failed_build(client, app)
                status = client.get(f"/apps/{app}/environments/{env}")
            except APIError as exc:
                last = str(exc)
                continue
            if failure is not None:
                raise BerthError(failure)
            url = status.get("url")
            if status.get("stable") is None or status.get("rollout") is not None or not url:
                settled_since = None
                last = f"{app} has no healthy release in {env} yet"
                continue
            try:
                response = web.get(url + "/")
            except httpx.HTTPError as exc:
                last = f"{url}/ did not answer: {exc}"
                settled_since = settled_since or time.monotonic()
                continue
            if response.status_code == 200:
                return Answer(url, response.text)
            last = f"{url}/ answered HTTP {response.status_code}"
            settled_since = settled_since or time.monotonic()
    raise BerthError(
        f"{app} did not become healthy in {env} within {timeout:.0f}s ({last}); see "
        f"{quick.serve_log} and berth status"
    )


def environment_urls(client: APIClient, app: str) -> list[tuple[str, str | None]]:
    rows = client.get("/status", app=app)["environments"]
    return [(row["env"], row.get("url") if row.get("stable") else None) for row in rows]


# --- tearing down ----------------------------------------------------------------------


def remove_routers(settings: Settings) -> list[str]:
    """Remove the router table of every (app, environment); the problems, if any."""
    from pipeline.rollout.nftrouter import NftRouter
    from runners.errors import RunnerError

    router, problems = NftRouter(), []
    for app in settings.apps:
        for env in settings.environments:
            try:
                router.remove(app.name, env.name)
            except (BerthError, RunnerError) as exc:
                problems.append(str(exc))
    return problems


def tear_down(settings: Settings, quick: QuickStart) -> None:
    """Router tables, then the cluster; raises when something could not be removed."""
    from runners.cluster import cluster_down

    problems = remove_routers(settings)
    state = cluster_down(quick.cluster_dir)
    if state is not None:
        _say(f"cluster {state.plan.name} is down")
    if problems:
        raise BerthError("could not remove every router table:\n" + "\n".join(problems))


# --- the commands ----------------------------------------------------------------------

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("config/berth.yml"),
    show_default=True,
    help="The service config (with cluster: and the demo app).",
)


def _load(config_path: Path) -> tuple[Settings, QuickStart]:
    from pipeline.settings import load_settings

    if not config_path.is_file():
        raise BerthError(f"{config_path}: no such file; pass --config FILE")
    settings = load_settings(config_path)
    if settings.cluster is None:
        raise BerthError(
            f"{config_path}: berth up runs a simulated cluster; the config needs "
            "cluster: {hosts: N} (or run berth serve for real hosts)"
        )
    if not settings.registry.embedded:
        raise BerthError(f"{config_path}: berth up needs registry: {{embedded: true}}")
    data = settings.data_dir.absolute()
    quick = QuickStart(config_path.absolute(), data, data / "build-cache")
    return settings, quick


def _other_up(quick: QuickStart) -> int | None:
    state = read_state(quick)
    if state is None or not isinstance(state.get("pid"), int):
        return None
    pid = int(state["pid"])
    if pid != os.getpid() and _start_time(pid) == state.get("start_time"):
        return pid
    return None


@dataclass(frozen=True)
class UpOptions:
    """What ``berth up`` was asked to do beyond the config."""

    demo: Path
    exit_when_healthy: bool
    timeout: float
    cluster_name: str
    subnet: str
    container_subnet: str


def _prepare(settings: Settings, quick: QuickStart, opts: UpOptions) -> None:
    """Steps 2 to 5: the cluster, the demo repository, the base image, the token."""
    from runners.cluster import cluster_up, default_agent_argv
    from runners.clusterstate import HostSpec, plan_cluster

    assert settings.cluster is not None
    port = settings.listen[0].port
    plan = plan_cluster(
        opts.cluster_name,
        settings.cluster.hosts,
        quick.cluster_dir,
        link=opts.subnet,
        pool=opts.container_subnet,
    )
    registry = f"{plan.gateway.ip}:{port}"

    def agent_argv(host: HostSpec) -> list[str]:
        # the embedded registry is plain HTTP on the cluster bridge, reachable only here
        return [*default_agent_argv(host), "--insecure-registry", registry]

    _say(f"[2/6] starting {len(plan.hosts)} simulated hosts (cluster {plan.name}) ...")
    cluster_up(plan, agent_argv=agent_argv, ready_timeout=60)
    _say(f"      hosts up on {plan.link}; they pull from the registry at {registry}")

    for app in settings.apps:
        repo = app.path
        if repo is None or Path(repo).exists():
            continue
        _say(f"[3/6] seeding {app.name}'s git repository {repo} from {opts.demo}")
        seed_repo(opts.demo, Path(repo))
    _say("[4/6] making the busybox base image in the build cache")
    _run(
        [sys.executable, "-m", "pipeline.cli.main", "image", "base", "busybox",
         "-t", "busybox", "--cache-dir", str(quick.cache_dir)],
        "making the busybox base image",
    )  # fmt: skip
    for path in token_files(settings):
        if not path.exists():
            _say(f"[5/6] writing a new API token to {path} (mode 0600)")
            write_token_file(path)


def _serve_and_wait(settings: Settings, quick: QuickStart, opts: UpOptions) -> None:
    """Step 6 and on: serve, the first release, what to do next, then wait."""
    from pipeline.cli.apiclient import APIClient, Connection

    listen = settings.listen[0]
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    if host in ("0.0.0.0", "[::]"):  # noqa: S104 - reaching our own wildcard listener
        host = "127.0.0.1"
    server = f"http://{host}:{listen.port}"
    files = token_files(settings)
    token = files[0].read_text().strip() if files else None
    app, envs = settings.apps[0].name, [e.name for e in settings.environments]
    _say(f"[6/6] starting berth serve at {server} (log: {quick.serve_log})")
    proc = start_serve(quick)
    try:
        write_state(quick, proc.pid)
        _say(f"      waiting for the first release of {app} to be healthy in {envs[0]} ...")
        with APIClient(Connection(server, token)) as client:
            answer = wait_for_first_release(
                client, proc, quick, app=app, env=envs[0], timeout=opts.timeout
            )
            _say(f"{app} answers in {envs[0]} at {answer.url}: {answer.title}")
            urls = environment_urls(client, app)
        repo = settings.apps[0].path
        click.echo(
            next_steps(
                berth=berth_program(),
                server=server,
                token_file=files[0] if files else None,
                app=app,
                repo=Path(repo) if repo is not None else None,
                urls=urls,
                first=envs[0],
                later=envs[1:],
            )
        )
        if opts.exit_when_healthy:
            _say("--exit-when-healthy: the demo answered; shutting down")
            return
        while proc.poll() is None:
            time.sleep(POLL)
        _alive(proc, quick)
    finally:
        stop_serve(proc)


@click.command()
@config_option
@click.option(
    "--demo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The demo app's files, copied into a new repository when the app's path is "
    "absent [default: deploy/demo of this checkout].",
)
@click.option(
    "--exit-when-healthy",
    is_flag=True,
    help="Stop everything and exit 0 once the first release answers in the first "
    "environment (exit 1 on failure or timeout).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the first release to become healthy.",
)
@click.option("--cluster-name", default="local", show_default=True, help="The cluster's name.")
@click.option(
    "--subnet", default="10.240.0.0/24", show_default=True, help="The link between the hosts."
)
@click.option(
    "--container-subnet",
    default="10.241.0.0/16",
    show_default=True,
    help="Split into one /24 per host for its containers.",
)
def up(
    config_path: Path,
    demo: Path | None,
    exit_when_healthy: bool,
    timeout: float,
    cluster_name: str,
    subnet: str,
    container_subnet: str,
) -> None:
    """Run the whole flow on this machine: a simulated cluster, the control plane with
    its registry, and a demo app whose first release rolls out to the first environment.

    Needs root. Runs until Ctrl-C or `berth down`; then stops everything and leaves no
    namespace, mount, process or nftables table behind.
    """
    _say("[1/6] checking root and tools")
    if os.geteuid() != 0:
        raise BerthError("berth up needs root (namespaces, mounts, nftables); run it with sudo")
    missing = missing_tools()
    if missing:
        raise BerthError(f"missing: {', '.join(missing)}; run bash deploy/setup.sh")
    settings, quick = _load(config_path)
    opts = UpOptions(
        demo or default_demo_dir(),
        exit_when_healthy,
        timeout,
        cluster_name,
        subnet,
        container_subnet,
    )
    closed = untraversable(quick.data_dir)
    if closed:
        raise BerthError(
            f"data_dir {quick.data_dir}: containers run as an unprivileged user that cannot "
            f"enter {', '.join(map(str, closed))}; allow it (chmod o+x DIR) or put data_dir "
            "elsewhere"
        )
    quick.data_dir.mkdir(parents=True, exist_ok=True)
    running = _other_up(quick)
    if running is not None:
        raise BerthError(f"berth up already runs (pid {running}) with {quick.data_dir}")
    interrupted: str | None = None
    with _Signals() as signals:
        try:
            write_state(quick, None)
            _prepare(settings, quick, opts)
            _serve_and_wait(settings, quick, opts)
        except Stopped as stop:
            interrupted = str(stop)
        finally:
            signals.armed = False
            _say("stopping: berth serve, the router tables, the cluster ...")
            try:
                tear_down(settings, quick)
            finally:
                quick.state_file.unlink(missing_ok=True)
    _say(f"stopped{f' ({interrupted})' if interrupted else ''}; nothing is left running")


@click.command()
@config_option
@click.option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=120.0,
    show_default=True,
    help="Seconds to wait for berth up to finish stopping.",
)
def down(config_path: Path, timeout: float) -> None:
    """Stop a running `berth up` (same --config); without one, remove what a crashed
    `berth up` left: its cluster and router tables."""
    settings, quick = _load(config_path)
    pid = _other_up(quick)
    if pid is None:
        click.echo(f"berth down: no berth up runs with {quick.data_dir}; cleaning up")
        state = read_state(quick) or {}
        serve, serve_start = state.get("serve_pid"), state.get("serve_start_time")
        if isinstance(serve, int) and isinstance(serve_start, int):
            from runners.cluster import stop_process

            # a berth serve a killed berth up left behind (the start time guards the pid)
            stop_process(serve, serve_start, grace=STOP_TIMEOUT)
        tear_down(settings, quick)
        quick.state_file.unlink(missing_ok=True)
        click.echo("berth down: done")
        return
    click.echo(f"berth down: stopping berth up (pid {pid}) ...")
    start = _start_time(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _start_time(pid) == start and start is not None:
        if time.monotonic() > deadline:
            raise BerthError(f"berth up (pid {pid}) still runs after {timeout:.0f}s; see ps")
        time.sleep(0.2)
    click.echo("berth down: done")
