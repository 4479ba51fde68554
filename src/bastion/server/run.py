"""``bastion up`` and ``bastion serve``: initialise (``up`` only), print how to log in, serve.

One process (``--workers 1``) serves in the process that started it, as always. With N > 1
the starting process becomes a small **master**: it binds the port once, starts N server
processes (``python -m bastion.server.process``) that all accept connections on that one socket,
restarts one that dies (after 1 s, doubling up to 30 s while it keeps dying), and stops them
all on SIGINT / SIGTERM. Each server process is a whole Bastion (gateway, control plane,
writer with its own write-ahead log slot); the leader among them runs the model workers.
A server process exits by itself when the master is gone (a pipe it holds reports
end-of-file), however the master died.

``bastion serve`` joins an existing deployment: it never migrates (it waits for the schema
``bastion up`` brings), creates no admin and registers no default model.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import uvicorn
from rich.console import Console

from bastion import dashboard
from bastion.apps import apps_of
from bastion.bootstrap import ADMIN_USER, InitialCredentials, initialize
from bastion.platform import Platform
from bastion.server.app import create_app
from bastion.server.protocol import HttpProtocol
from bastion.serving.control.bootstrap import bootstrap_default_model
from bastion.settings import Settings

logger = logging.getLogger(__name__)

RESTART_BACKOFF_S = 1.0
MAX_RESTART_BACKOFF_S = 30.0
STOP_GRACE_S = 120.0  # a stopping process commits its write-ahead log first


def _welcome(settings: Settings, credentials: InitialCredentials | None) -> str:
    url = settings.base_url
    lines = [f"Bastion is starting at [bold]{url}[/bold] (home: {settings.home.resolve()})."]
    if credentials is not None:
        supplied = "(as given in {})"
        lines += [
            "",
            "First run: an admin was created. Generated credentials are shown [bold]once[/bold];"
            " store them now.",
            f"  user name:  {credentials.user_name}",
            f"  password:   {credentials.password or supplied.format('BASTION_ADMIN_PASSWORD')}",
            f"  token:      {credentials.token or supplied.format('BASTION_ADMIN_TOKEN')}",
            "",
            "Use the token from the CLI or any SDK:",
            f"  bastion configure --host {url} --token <token>",
            f"  curl -H 'Authorization: Bearer <token>' {url}/api/2.0/preview/scim/v2/Me",
        ]
    else:
        lines += ["Log in with the admin credentials printed on the first run."]
    if settings.dashboard:
        lines += [f"Dashboard: {url}/apps/dashboard/ (sign in with a user name and password)"]
    lines += [f"API docs: {url}/api/docs"]
    return "\n".join(lines)


def deploy_dashboard(platform: Platform) -> None:
    """The built-in operations dashboard, as the app ``dashboard`` usable by ``users``: its
    current code is deployed on every start."""
    admin = platform.identity_cache.active_caller(ADMIN_USER)
    if admin is None:
        logger.warning("no active admin: the built-in dashboard is not deployed")
        return
    apps_of(platform).ensure_builtin(
        dashboard.NAME,
        dashboard.APP_DIR,
        owner=admin,
        description="Bastion's operations dashboard: traffic, risk, traces, endpoints, audit.",
        user_api_scopes=dashboard.USER_API_SCOPES,
        usable_by_group=dashboard.USABLE_BY,
    )


def _setup_process(settings: Settings) -> None:
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def serve(
    settings: Settings,
    *,
    default_model: bool = True,
    workers: int | None = None,
    join: bool = False,
) -> None:
    """``bastion up`` (``join=False``) or ``bastion serve`` (``join=True``) with ``workers``
    server processes (default: ``settings.resolved_workers``)."""
    _setup_process(settings)
    count = workers or settings.resolved_workers
    if count > 1 and settings.redis is None:
        logger.warning(
            "%d server processes without BASTION_REDIS_URL: each process counts rate limits "
            "and budgets by itself (up to %d times the configured amounts)",
            count,
            count,
        )
    platform = Platform(settings, migrate=not join)
    try:
        credentials = None
        if not join:
            credentials = initialize(platform)
            if default_model:
                bootstrap_default_model(platform)
            if settings.dashboard and count == 1:
                deploy_dashboard(platform)
            elif settings.dashboard:
                # Each server process runs the apps deployed before; deploying the built-in
                # one is the single-process start's duty (docs/deploy.md).
                logger.info("--workers %d: the built-in dashboard is not redeployed", count)
        Console(soft_wrap=True).print(_welcome(settings, credentials), highlight=False)
        if join:
            logger.info(
                "joining the deployment of %s", settings.resolved_database_url.split("@")[-1]
            )
    except BaseException:
        platform.close()
        raise
    if count == 1:
        _serve_here(settings, platform)
        return
    platform.close()  # the master keeps no platform: each server process opens its own
    Master(settings, count).run()


def _serve_here(settings: Settings, platform: Platform, sock: socket.socket | None = None) -> None:
    app = create_app(settings, platform)
    # Everything built so far (modules, metastore, caches) lives as long as the process: keep
    # it out of the cyclic collector's full passes, which otherwise stall requests for tens
    # of milliseconds each.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
        server_header=False,
        http=HttpProtocol,  # a response in one send (bastion.server.protocol)
    )
    # uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler it
    # found; with the default one the process would die before committing its write-ahead
    # log. Ours turns that second delivery into an ordinary exit, so the close below runs.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.Server(config).run(sockets=[sock] if sock is not None else None)
    finally:
        # A second request to stop (the master's SIGTERM after a Ctrl-C to the group) must not
        # cut the commit short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            platform.close()
        finally:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


class Master:
    """Binds the port, runs ``count`` server processes on it, restarts those that die."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.failures: dict[int, int] = {}
        self._stopping = threading.Event()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.settings.host, self.settings.port))
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock

    def _start(self, index: int, sock: socket.socket, lifeline: int) -> None:
        env = {
            **os.environ,
            "BASTION_HOME": str(self.settings.home),
            "BASTION_BIND_HOST": self.settings.host,
            "BASTION_PORT": str(self.settings.port),
        }
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bastion.server.process",
                "--fd",
                str(sock.fileno()),
                "--lifeline",
                str(lifeline),
                "--index",
                str(index),
            ],
            env=env,
            pass_fds=(sock.fileno(), lifeline),
        )
        self.children[index] = child
        logger.info("server process %d started (pid %d)", index, child.pid)

    def run(self) -> None:
        sock = self._bind()
        read_end, write_end = os.pipe()  # the children's lifeline: EOF when we are gone
        os.set_inheritable(read_end, True)

        def stop(_signum: int, _frame: object) -> None:
            self._stopping.set()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        restart_at: dict[int, float] = {}
        try:
            for index in range(self.count):
                self._start(index, sock, read_end)
            while not self._stopping.wait(0.2):
                now = time.monotonic()
                for index, child in list(self.children.items()):
                    code = child.poll()
                    if code is None:
                        continue
                    if index not in restart_at:
                        failures = self.failures.get(index, 0)
                        delay = min(MAX_RESTART_BACKOFF_S, RESTART_BACKOFF_S * 2**failures)
                        self.failures[index] = failures + 1
                        restart_at[index] = now + delay
                        logger.warning(
                            "server process %d (pid %d) exited with %s; restarting in %.0f s",
                            index,
                            child.pid,
                            code,
                            delay,
                        )
                    elif now >= restart_at[index]:
                        del restart_at[index]
                        self._start(index, sock, read_end)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_children()
            os.close(write_end)
            os.close(read_end)
            sock.close()

    def _stop_children(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _watch_lifeline(fd: int) -> None:
    """Exit when the master is gone: its end of the pipe closes and our read sees EOF."""
    while True:
        try:
            data = os.read(fd, 1)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            break
    logger.warning("the master process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(STOP_GRACE_S)
    os._exit(1)


def server_process(argv: list[str] | None = None) -> None:
    """One of the master's server processes (``python -m bastion.server.process``)."""
    parser = argparse.ArgumentParser(prog="bastion.server.process")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--lifeline", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    settings = Settings()
    _setup_process(settings)
    threading.Thread(
        target=_watch_lifeline, args=(args.lifeline,), name="bastion-lifeline", daemon=True
    ).start()
    sock = socket.socket(fileno=args.fd)
    platform = Platform(settings, migrate=False)  # the master migrated, or a peer did
    logger.info("server process %d: write-ahead log slot %d", args.index, platform.wal_slot)
    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C to the group: stopped cleanly
        _serve_here(settings, platform, sock)
