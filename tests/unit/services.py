"""Services some tests need (headless Chromium, a PostgreSQL server), found or started here.

Locally a test whose service is missing is skipped with a line saying how to install it; under
CI (``CI=true``) the same test fails instead, so a CI run can never pass without the checks it
was meant to run. PostgreSQL is never a shared server: :class:`Cluster` makes a throwaway
cluster in a temporary directory with Debian's server binaries (``initdb``, ``pg_ctl``), run as
an unprivileged user when the tests run as root, and removes it afterwards.

pytest puts this folder on sys.path (tests/ is not a package): ``from services import ...``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_CHROMIUM = "apt-get install -y chromium"
INSTALL_POSTGRESQL = "apt-get install -y postgresql (the server binaries initdb and pg_ctl)"


def missing(what: str, install: str) -> None:
    """Skip (locally) or fail (under CI) a test whose service is not on this machine."""
    message = f"{what} is not on this machine; install it with `{install}`"
    if UNDER_CI:
        pytest.fail(f"{message} (CI=true: a missing service fails the run)")
    pytest.skip(message)


def chromium_binary() -> str | None:
    return next((b for b in (shutil.which(n) for n in BROWSERS) if b), None)


def require_chromium() -> str:
    found = chromium_binary()
    if found is None:
        missing("headless Chromium", INSTALL_CHROMIUM)
    assert found is not None
    return found


def chromium(profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with the flags this closed network needs (no background connections)."""
    return subprocess.run(
        [
            require_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- PostgreSQL --------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL server binaries (``/usr/lib/postgresql/<v>/bin``), or PATH's."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A throwaway PostgreSQL cluster: ``initdb`` in a temporary directory, ``pg_ctl`` to start,
    stop and restart it (the fault tests restart it under load), trust authentication on
    loopback only, durable commits as in production (``synchronous_commit=on``, ``fsync=on``)."""

    def __init__(self, bindir: Path, *, user: str = "fabric") -> None:
        self.bindir = bindir
        self.user = user
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="fabric-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._run_as: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._run_as = "postgres" if _user_exists("postgres") else "nobody"
            os.chmod(self.root, 0o700)
            pw = pwd.getpwnam(self._run_as)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bindir / args[0]), *args[1:]]
        kwargs: dict[str, object] = {}
        if self._run_as is not None:
            pw = pwd.getpwnam(self._run_as)
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            cwd=self.root,
            **kwargs,
        )

    def init(self) -> Cluster:
        self._cmd(
            "initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-locale"
        )
        conf = self.data / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "synchronous_commit = on\nfsync = on\nmax_connections = 200\n"
            )
        return self

    def start(self) -> None:
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a name made by the tests, never user input
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """A started throwaway cluster (skipped locally, a failure under CI, without the binaries)."""
    bindir = postgres_bindir()
    if bindir is None:
        missing("PostgreSQL's server (initdb, pg_ctl)", INSTALL_POSTGRESQL)
    assert bindir is not None
    cluster = Cluster(bindir).init()
    try:
        cluster.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", cluster.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield cluster
    finally:
        cluster.destroy()
