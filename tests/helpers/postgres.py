"""A real PostgreSQL server for tests, started from the distribution's server binaries.

``start_postgres()`` runs ``initdb`` into a fresh temp directory and starts ``postgres``
on a free loopback port with trust authentication; ``PostgresServer.stop()`` shuts it down
by pid and removes the directory. When the suite runs as root, both run as the
``postgres`` system user (PostgreSQL refuses to run as root) and the directory is owned
by it. Durability is switched off (fsync, synchronous commit): this server holds
throw-away test data only.

Missing binaries raise :class:`PostgresUnavailable` with what to install; fixtures turn it
into a test *failure*, never a skip.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.helpers.procs import free_port

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVICE_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries (or the user to run them as) are missing."""


def find_bin_dir(pattern: str = BIN_GLOB) -> Path:
    """The ``bin`` directory of the newest PostgreSQL matching ``pattern`` (an absolute
    glob; by default Debian's /usr/lib/postgresql/VERSION/bin)."""
    found = [Path(p).parent for p in Path("/").glob(pattern.lstrip("/") + "/initdb")]
    if not found:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries not found (no {pattern}/initdb): install Debian's "
            "postgresql package (apt-get install -y postgresql) to run the PostgreSQL tests"
        )

    def version(bin_dir: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", bin_dir.parent.name)) or (0,)

    return max(found, key=version)


@dataclass
class PostgresServer:
    """A running PostgreSQL server on 127.0.0.1:``port``; superuser ``postgres``, no password."""

    bin_dir: Path
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    user: str = SERVICE_USER
    _databases: set[str] = field(default_factory=set)

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for ``database`` (berth picks the psycopg 3 driver itself)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """A libpq connection string for ``database``."""
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def create_database(self, prefix: str = "test") -> str:
        """Create a fresh, empty database and return its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._databases.add(name)
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still connected to it."""
        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._databases.discard(name)

    def truncate_tables(self, database: str, *, keep: tuple[str, ...] = ()) -> None:
        """Empty every table of ``database``'s public schema but ``keep``, and restart
        their id sequences: a fresh database for the next test, at a fraction of the cost
        of creating one."""
        with psycopg.connect(self.conninfo(database), autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
            tables = [sql.Identifier(name) for (name,) in rows if name not in keep]
            if tables:
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                        sql.SQL(", ").join(tables)
                    )
                )

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown by pid (SIGINT), SIGKILL if it hangs; then remove the directory."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, timeout: float = 60.0) -> PostgresServer:
    """initdb + start a server on a free loopback port; wait until it accepts queries."""
    bin_dir = find_bin_dir()
    run_as = _service_user()
    # Not under pytest's tmp_path: that lives in a root-only directory the postgres user
    # cannot enter.
    root = Path(tempfile.mkdtemp(prefix="berth-pg-"))
    try:
        data, sockets = root / "data", root / "sock"
        data.mkdir()
        sockets.mkdir()
        if run_as is not None:
            for path in (root, data, sockets):
                os.chown(path, run_as.pw_uid, run_as.pw_gid)
        data.chmod(0o700)
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SERVICE_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            run_as,
            root,
        )
        port = free_port()
        log = open(root / "postgres.log", "wb")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(sockets),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=root,
                env=_env(run_as),
                **_identity(run_as),
            )
        finally:
            log.close()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    server = PostgresServer(bin_dir=bin_dir, root=root, port=port, proc=proc)
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: PostgresServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"postgres exited with {server.proc.returncode} before accepting "
                f"connections:\n{server.log()[-3000:]}"
            )
        try:
            with psycopg.connect(server.conninfo(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(
        f"postgres did not accept connections on {server.host}:{server.port} within "
        f"{timeout}s (last error: {last}):\n{server.log()[-3000:]}"
    )


def _service_user() -> pwd.struct_passwd | None:
    """The user to run the server as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, but there is no {SERVICE_USER!r} user to run PostgreSQL as: "
            "install Debian's postgresql package, which creates it"
        ) from None


def _identity(run_as: pwd.struct_passwd | None) -> dict[str, object]:
    if run_as is None:
        return {}
    return {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}


def _env(run_as: pwd.struct_passwd | None) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
    if run_as is not None:
        env |= {"HOME": run_as.pw_dir, "USER": run_as.pw_name, "LOGNAME": run_as.pw_name}
    return env


def _run(argv: list[str], run_as: pwd.struct_passwd | None, cwd: Path) -> None:
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=_env(run_as),
        timeout=120,
        **_identity(run_as),
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {result.returncode}:\n{result.stderr[-3000:]}"
        )
