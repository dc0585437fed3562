"""The local stack's PostgreSQL: which database is chosen, URLs, permissions, and a real cluster on disk."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from driftline.cli.postgres import (
    LocalPostgres,
    choose_database,
    external_url,
    find_binaries,
    unreachable_ancestor,
)
from driftline.cli.stack import LocalStack, _start_time, worker_index, worker_name, worker_part, worker_record
from driftline.errors import InputError, StackError
from driftline.settings import Settings
from tests.support import REPO, free_port, postgres_server


def test_the_default_is_sqlite_and_the_setting_asks_for_a_managed_postgresql() -> None:
    assert choose_database(Settings()).kind == "sqlite"
    choice = choose_database(Settings(prefect_database="postgresql"))
    assert (choice.kind, choice.managed, choice.url) == ("postgresql", True, None)


def test_an_external_url_wins_gets_the_asyncpg_driver_and_is_shown_without_its_password(tmp_path: Path) -> None:
    settings = Settings(prefect_database_url=SecretStr("postgresql://prefect:s3cret@db.internal:5432/prefect"))
    choice = choose_database(settings)
    assert (choice.kind, choice.managed) == ("postgresql", False)
    assert choice.url == "postgresql+asyncpg://prefect:s3cret@db.internal:5432/prefect"
    shown = choice.describe(tmp_path)
    assert "s3cret" not in json.dumps(shown)
    assert shown["url"] == "postgresql+asyncpg://prefect:***@db.internal:5432/prefect"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://u:topsecret@h/db", "expected postgresql"),
        ("postgresql://u:topsecret@h:port/db", "port is not a number"),
        ("postgresql://u:topsecret@h:5432/", "needs a host and a database name"),
        ("db.internal:5432/prefect", "expected postgresql"),
    ],
)
def test_a_bad_external_url_names_the_setting_and_hides_the_password(url: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as caught:
        external_url(url)
    assert "DRIFTLINE_PREFECT_DATABASE_URL" in str(caught.value)
    assert "topsecret" not in str(caught.value)


def test_a_private_directory_on_the_way_is_named_for_another_user(reachable_dir: Path) -> None:
    private = reachable_dir / "private"
    (private / "state").mkdir(parents=True)
    private.chmod(0o700)
    other_uid, other_gid = os.getuid() + 4242, os.getgid() + 4242
    assert unreachable_ancestor(private / "state" / "postgres", other_uid, other_gid) == private
    private.chmod(0o755)
    assert unreachable_ancestor(private / "state" / "postgres", other_uid, other_gid) is None
    # The owner may enter its own 0700 directory.
    private.chmod(0o700)
    assert unreachable_ancestor(private / "state", os.getuid(), os.getgid()) is None


def test_missing_server_binaries_say_how_to_install_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match=r"postgresql. package .*make postgres.*DRIFTLINE_PREFECT_DATABASE_URL"):
        find_binaries(search=[str(tmp_path / "nothing" / "*")])


def test_worker_parts_names_and_records_line_up() -> None:
    assert [worker_part(i) for i in (1, 2, 3)] == ["worker", "worker-2", "worker-3"]
    assert [worker_index(p) for p in ("worker", "worker-2", "worker-process", "worker-1", "s3")] == [
        1,
        2,
        None,
        None,
        None,
    ]
    assert worker_name(1) == "driftline-local-worker" and worker_name(2) == "driftline-local-worker-2"
    assert worker_record(1) == "worker-process.json" and worker_record(2) == "worker-process-2.json"


def test_a_running_server_on_sqlite_is_not_silently_switched_to_postgresql(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",
        project_dir=REPO,
        s3_port=free_port(),
        prefect_port=free_port(),
        postgres_port=free_port(),
        prefect_database="postgresql",
    )
    stack = LocalStack(settings)
    server = subprocess.Popen(["sleep", "60"], start_new_session=True)
    record = {"pid": server.pid, "start_time": _start_time(server.pid), "command": ["prefect"], "database": "sqlite"}
    (stack.state_dir / "pids").mkdir(parents=True)
    (stack.state_dir / "pids" / "prefect-server.json").write_text(json.dumps(record))
    try:
        with pytest.raises(StackError, match=r"runs on sqlite, but the settings ask for postgresql.*driftline down"):
            stack.up()
        assert stack.running_pid("s3") is None and stack.running_pid("postgres") is None
        assert not (stack.state_dir / "postgres").exists()  # nothing was initialised either
    finally:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def reachable_dir() -> Iterator[Path]:
    # As root the cluster belongs to `postgres`, who cannot enter pytest's private tmp dir.
    path = Path(tempfile.mkdtemp(prefix="driftline-unit-pg-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_new_cluster_belongs_to_its_user_keeps_a_private_password_and_listens_on_loopback_only(
    reachable_dir: Path,
) -> None:
    postgres = LocalPostgres(reachable_dir / "state", "127.0.0.1", free_port())
    assert postgres.initialize() is True
    assert postgres.initialized() and postgres.initialize() is False
    owner = pwd.getpwuid(postgres.data_dir.stat().st_uid).pw_name
    assert owner == (postgres.run_as or pwd.getpwuid(os.geteuid()).pw_name)
    assert stat.S_IMODE(postgres.password_file.stat().st_mode) == 0o600
    assert not (postgres.root / ".initdb-password").exists()
    password = postgres.password()
    assert password in postgres.url and password not in postgres.address
    command = " ".join(postgres.command())
    assert "listen_addresses=127.0.0.1" in command and "unix_socket_directories=" in command
    hba = (postgres.data_dir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all("trust" not in rule for rule in rules)


def test_a_real_server_takes_the_password_and_refuses_a_wrong_one() -> None:
    import asyncio

    import asyncpg

    async def connect(url: str) -> int:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval("SELECT 1")
        finally:
            await connection.close()

    with postgres_server() as url:
        plain = url.replace("postgresql+asyncpg://", "postgresql://")
        assert asyncio.run(connect(plain)) == 1
        user, rest = plain.split("@", 1)
        wrong = user.rsplit(":", 1)[0] + ":wrong-password@" + rest
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(connect(wrong))
