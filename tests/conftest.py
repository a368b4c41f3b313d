"""Shared fixtures: real SQLite files, a fresh PostgreSQL database per test, real executors."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from slothflow import Scheduler

PG_ADMIN_URI = os.environ.get("SLOTHFLOW_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URI.replace("+psycopg", ""), connect_timeout=3):
            return True
    except Exception:
        return False


_PG = _pg_available()


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'slothflow.db'}"


@pytest.fixture
def pg_uri() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    if not _PG:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (CI must start it)")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    import psycopg

    name = f"slothflow_test_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN_URI.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URI.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_uri(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once against SQLite and once against PostgreSQL."""
    fixture = "sqlite_uri" if request.param == "sqlite" else "pg_uri"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def scheduler(sqlite_uri: str) -> Iterator[Scheduler]:
    s = Scheduler(config={"backend": {"db_uri": sqlite_uri}})
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _isolated_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own folder so a default project database never leaks between tests."""
    monkeypatch.chdir(tmp_path)
    for name in ("SLOTHFLOW_PROJECT_DIR", "SLOTHFLOW_CONFIG", "REDUN_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sql(sqlite_uri: str) -> Callable[..., list[tuple[Any, ...]]]:
    """Run a read-only query on the test's SQLite database file: ``sql("SELECT ...", *params)``."""
    import sqlite3

    path = sqlite_uri.split(":///", 1)[1]

    def query(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path)
        try:
            return list(conn.execute(statement, params))
        finally:
            conn.close()

    return query


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """A real S3-compatible server (moto_server) on a free loopback port, reached through s3fs via
    ``FSSPEC_S3_ENDPOINT_URL`` and AWS environment variables, as a user would; stopped at the end."""
    import s3_server as s3mod

    saved = dict(os.environ)
    with s3mod.moto_server() as endpoint:
        s3mod.configure_environment(endpoint)
        try:
            yield s3mod.S3(endpoint)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            import fsspec.config

            fsspec.config.conf.pop("s3", None)
