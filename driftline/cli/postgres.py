"""PostgreSQL for the local Prefect server (``DRIFTLINE_PREFECT_DATABASE=postgresql``).

SQLite answers "database is locked" under concurrent writers (several workers, bursts of events); teams
that outgrow it run Prefect on PostgreSQL. The local stack can do the same on one machine with Debian's
``postgresql`` package: the cluster lives under ``<state_dir>/postgres/data``, listens on loopback TCP
only (no Unix socket, whose path length limit a deep state dir would exceed), and a generated password
for the ``prefect`` role is kept in ``<state_dir>/postgres/password`` (mode 0600). ``initdb`` and the
server refuse to run as root, so as root both run as the ``postgres`` system user; the state dir must
then be reachable by that user (a clear error names the directory when it is not).

``DRIFTLINE_PREFECT_DATABASE_URL`` points the Prefect server at an external PostgreSQL instead; the stack
then starts none.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from driftline.errors import InputError, StackError
from driftline.settings import Settings, redact_url

ROLE = "prefect"
DATABASE = "prefect"
SYSTEM_USER = "postgres"
DRIVER_SCHEME = "postgresql+asyncpg"


@dataclass(frozen=True)
class DatabaseChoice:
    """Which database the local Prefect server uses and whether the stack runs it."""

    kind: Literal["sqlite", "postgresql"]
    managed: bool
    url: str | None = None
    reason: str = ""

    def describe(self, state_dir: Path, local_url: str = "") -> dict:
        """What ``driftline status --json`` shows: kind, where, who runs it; never a password.

        ``local_url`` is the address of the PostgreSQL the stack runs (it has no URL of its own here).
        """
        if self.kind == "sqlite":
            where = str(state_dir / "prefect" / "prefect.db")
        else:
            where = redact_url(self.url or local_url)
        return {"kind": self.kind, "managed": self.managed, "url": where, "reason": self.reason}


def choose_database(settings: Settings) -> DatabaseChoice:
    """The database of the local Prefect server, from settings alone.

    Raises:
        InputError: DRIFTLINE_PREFECT_DATABASE_URL is not a PostgreSQL URL.
    """
    if settings.prefect_database_url is not None:
        url = external_url(settings.prefect_database_url.get_secret_value())
        return DatabaseChoice("postgresql", False, url, "DRIFTLINE_PREFECT_DATABASE_URL is set")
    if settings.prefect_database == "postgresql":
        return DatabaseChoice("postgresql", True, None, "DRIFTLINE_PREFECT_DATABASE=postgresql")
    return DatabaseChoice("sqlite", False, None, "default (DRIFTLINE_PREFECT_DATABASE=sqlite)")


def external_url(url: str) -> str:
    """``url`` with the asyncpg driver Prefect needs; ``postgresql://`` and ``postgres://`` are accepted.

    Raises:
        InputError: another scheme, or no host or database name.
    """
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", DRIVER_SCHEME):
        raise InputError(
            f"DRIFTLINE_PREFECT_DATABASE_URL={shown!r}: expected postgresql+asyncpg://user:password@host:port/db"
        )
    parts = urlsplit(f"{DRIVER_SCHEME}://{rest}")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        raise InputError(f"DRIFTLINE_PREFECT_DATABASE_URL={shown!r}: the port is not a number") from None
    if not parts.hostname or not parts.path.strip("/"):
        raise InputError(f"DRIFTLINE_PREFECT_DATABASE_URL={shown!r}: needs a host and a database name")
    return f"{DRIVER_SCHEME}://{rest}"


def unreachable_ancestor(path: Path, uid: int, gid: int) -> Path | None:
    """The first directory on the way to ``path`` that user ``uid`` cannot enter (None: all can be).

    Only permission bits are read (no ACLs): enough to explain why ``initdb`` as ``postgres`` failed.
    """
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            return None  # created later by us, with the owner set
        mode = info.st_mode
        if info.st_uid == uid:
            allowed = bool(mode & stat.S_IXUSR)
        elif info.st_gid == gid:
            allowed = bool(mode & stat.S_IXGRP)
        else:
            allowed = bool(mode & stat.S_IXOTH)
        if not allowed:
            return directory
    return None


def find_binaries(search: list[str] | None = None) -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``pg_isready`` (newest installed major first).

    Raises:
        StackError: PostgreSQL's server binaries are not installed.
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    patterns = search if search is not None else ["/usr/lib/postgresql/*/bin"]
    for pattern in patterns:
        found = sorted(glob.glob(pattern), key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts])
        candidates.extend(Path(p) for p in reversed(found))
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "postgres", "pg_isready", "psql")):
            return directory
    raise StackError(
        "DRIFTLINE_PREFECT_DATABASE=postgresql needs PostgreSQL's server binaries (initdb, postgres), which "
        "are not installed; install Debian's `postgresql` package (`make postgres` does it as root) or point "
        "DRIFTLINE_PREFECT_DATABASE_URL at an existing server"
    )


class LocalPostgres:
    """A PostgreSQL cluster under ``<state_dir>/postgres`` for the local Prefect server."""

    def __init__(self, state_dir: Path, host: str, port: int) -> None:
        self.root = state_dir / "postgres"
        self.data_dir = self.root / "data"
        self.password_file = self.root / "password"
        self.host = host
        self.port = port
        self._bin: Path | None = None

    @property
    def bin_dir(self) -> Path:
        if self._bin is None:
            self._bin = find_binaries()
        return self._bin

    @property
    def run_as(self) -> str | None:
        """The system user the server runs as: ``postgres`` when we are root, else ourselves (None)."""
        return SYSTEM_USER if os.geteuid() == 0 else None

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise StackError(
                f"{self.password_file} is missing but {self.data_dir} exists; restore the file or remove "
                f"{self.root} to start with an empty Prefect database"
            ) from None

    @property
    def address(self) -> str:
        """The connection URL without its password (for display)."""
        return f"{DRIVER_SCHEME}://{ROLE}:***@{self.host}:{self.port}/{DATABASE}"

    @property
    def url(self) -> str:
        return f"{DRIVER_SCHEME}://{ROLE}:{quote(self.password(), safe='')}@{self.host}:{self.port}/{DATABASE}"

    def _user(self) -> pwd.struct_passwd | None:
        if self.run_as is None:
            return None
        try:
            return pwd.getpwnam(self.run_as)
        except KeyError:
            raise StackError(
                f"running as root, the local PostgreSQL must run as the `{self.run_as}` system user, which does "
                "not exist; install Debian's `postgresql` package or run driftline as an unprivileged user"
            ) from None

    def initialize(self) -> bool:
        """Create the cluster on first use (returns False when it exists). Safe to re-run after a failure."""
        if self.initialized():
            return False
        user = self._user()
        self.root.mkdir(parents=True, exist_ok=True)
        if user is not None:
            blocked = unreachable_ancestor(self.root, user.pw_uid, user.pw_gid)
            if blocked is not None:
                raise StackError(
                    f"the `{user.pw_name}` user cannot enter {blocked}, so PostgreSQL cannot keep its data under "
                    f"{self.root}; set DRIFTLINE_STATE_DIR to a directory it can reach (e.g. under /var/tmp) "
                    "or run driftline as an unprivileged user"
                )
        # A half-made cluster from an interrupted initdb is not reusable; initdb wants an empty directory.
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
        # initdb reads the password from a file its own user can read; it is removed right after.
        pwfile = self.root / ".initdb-password"
        pwfile.write_text(self.password())
        pwfile.chmod(0o600)
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        try:
            result = subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    ROLE,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                user=self.run_as,
                cwd="/",
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(
                f"initdb for {self.data_dir} failed with exit code {result.returncode}:\n"
                + (result.stderr or result.stdout)[-2000:]
            )
        return True

    def command(self) -> list[str]:
        """The server in the foreground, so the stack's pid bookkeeping and signals apply to it directly."""
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "unix_socket_directories=",
            # Prefect's server opens a pool per process; the default 100 leaves room for several workers.
            "-c",
            "max_connections=200",
        ]

    def _client_env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password(), "PGCONNECT_TIMEOUT": "3"}

    def healthy(self) -> bool:
        try:
            result = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-U", ROLE],
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return result.returncode == 0

    def _psql(self, sql: str, database: str = "postgres") -> str:
        command = [
            str(self.bin_dir / "psql"),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            ROLE,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        ]
        result = subprocess.run(command, env=self._client_env(), capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise StackError(f"PostgreSQL at {self.host}:{self.port}: `{sql}` failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def ensure_database(self) -> bool:
        """Create the ``prefect`` database once; returns whether it was created."""
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") == "1":
            return False
        self._psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        return True
