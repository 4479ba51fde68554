"""Shared fixtures: metastores (SQLite, and PostgreSQL when configured) and a real server.

PostgreSQL runs when ``BASTION_TEST_POSTGRES_URL`` names a server (CI starts one); each test
then gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from bastion.bootstrap import initialize
from bastion.platform import Platform
from bastion.server.app import create_app
from bastion.settings import Settings
from services import RedisServer, redis_server

ADMIN_PASSWORD = "admin-password-for-tests"
ADMIN_TOKEN = "bstp_" + "a" * 40
POSTGRES_URL = os.environ.get("BASTION_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A blank metastore database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metastore.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("BASTION_TEST_POSTGRES_URL is not set")
    yield from _postgres_database()


def _postgres_database() -> Iterator[str]:
    assert POSTGRES_URL
    name = f"bastion_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(POSTGRES_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def make_settings(home: Path, database_url: str, **overrides: object) -> Settings:
    """Test settings. Test upstreams listen on 127.0.0.1, so that address is allowed for
    every user's URLs, as an administrator would allow an internal model server; the egress
    tests build servers without it (``egress_allow_hosts=[]``)."""
    values: dict[str, object] = {
        "home": home,
        "database_url": database_url,
        "admin_password": ADMIN_PASSWORD,
        "admin_token": ADMIN_TOKEN,
        "cache_poll_interval_s": 0,
        "egress_allow_hosts": ["127.0.0.1"],
        # In-process test platforms commit in their own process (no helper to spawn for each
        # of hundreds of short-lived platforms); the writer's tests cover both modes, and the
        # servers the tests start with `bastion up` run the default, the helper process.
        "writer_commit_process": False,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "home", database_url)


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    services = Platform(settings)
    initialize(services)
    yield services
    services.close()


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    platform: Platform
    admin_token: str = ADMIN_TOKEN

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=30)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)


class ServerThread:
    """A real uvicorn server on 127.0.0.1, in a thread of the test process."""

    def __init__(self, platform: Platform, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            create_app(platform.settings, platform),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server(platform: Platform) -> Iterator[RunningServer]:
    with ServerThread(platform) as url:
        yield RunningServer(url=url, platform=platform)


def create_user(server: RunningServer, name: str, password: str | None = None) -> tuple[str, str]:
    """Create a user as admin and a token for them; returns (user id, token)."""
    with server.admin() as admin:
        body: dict[str, object] = {"userName": name}
        if password:
            body["password"] = password
        response = admin.post("/api/2.0/preview/scim/v2/Users", json=body)
        assert response.status_code == 201, response.text
        user_id = response.json()["id"]
    record = server.platform.identity.find(name)
    assert record is not None
    raw, _ = server.platform.identity.create_token(
        record.id, kind="pat", prefix="bstp_", lifetime_s=3600
    )
    return user_id, raw


@pytest.fixture(scope="module", params=BACKENDS)
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server for a whole module, for tests that do not disturb each other."""
    home = tmp_path_factory.mktemp("shared")
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{home / 'metastore.db'}"])
    else:
        if not POSTGRES_URL:
            pytest.skip("BASTION_TEST_POSTGRES_URL is not set")
        urls = _postgres_database()
    url = next(urls)
    services = Platform(make_settings(home / "home", url))
    initialize(services)
    try:
        with ServerThread(services) as base:
            yield RunningServer(url=base, platform=services)
    finally:
        services.close()
        for _ in urls:  # finish the generator: drops the PostgreSQL database
            pass


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server (Debian's) on a free loopback port for the whole run."""
    with redis_server(tmp_path_factory.mktemp("redis"), password="test-redis-secret") as server:
        yield server


@pytest.fixture
def redis_url(redis_service: RedisServer) -> str:
    """The URL of an emptied Redis (its password included, as deployments give it)."""
    import redis

    client = redis.Redis.from_url(redis_service.url)
    client.flushall()
    client.close()
    return redis_service.url
