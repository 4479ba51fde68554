"""An S3-compatible server on loopback for the object-storage tests: moto's, in a child process.

Why moto (``moto[server]``, from PyPI): it installs with pip like the rest of the test extras
(MinIO is not packaged in Debian and nothing may be downloaded from elsewhere), speaks the S3
REST API that delta-rs's ``object_store`` client uses (SigV4, path-style addressing,
multipart uploads, ``ListObjectsV2``), and honours ``If-None-Match: *`` on ``PutObject`` with
``412 Precondition Failed`` — the conditional put delta-rs commits with.

One fix on top: moto checks "does the key exist?" and then stores the object as two steps,
so two threads racing on the same key could both pass the check. A real S3 decides that
atomically, so this server serialises conditional writes (requests carrying ``If-None-Match``
or ``If-Match``) behind one lock; everything else runs concurrently as usual.

    python tests/s3_server.py          # prints "port N" once listening on 127.0.0.1:N
    python tests/s3_server.py gate N   # a forwarder to port N; reads "close"/"open" lines

:class:`S3Server` starts it for a test and stops it; :class:`Gate` is a TCP forwarder in
front of it (another child process) whose ``close()`` makes the store unreachable (an outage)
and ``open()`` heals it.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ACCESS_KEY = "bastion-test-key"
SECRET_KEY = "bastion-test-secret-" + "s" * 20
REGION = "us-east-1"


def _serve() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def atomic_conditional_writes(
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        conditional = environ.get("HTTP_IF_NONE_MATCH") or environ.get("HTTP_IF_MATCH")
        if conditional and environ.get("REQUEST_METHOD") in ("PUT", "POST"):
            with lock:
                return list(app(environ, start_response))
        return app(environ, start_response)  # type: ignore[no-any-return]

    server = make_server("127.0.0.1", 0, atomic_conditional_writes, threaded=True)
    print(f"port {server.server_port}", flush=True)
    server.serve_forever()


class S3Server:
    """moto's S3 server in a child process on 127.0.0.1 (a random port)."""

    def __init__(self) -> None:
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("port "):
            self.process.kill()
            raise RuntimeError("the S3 test server did not start")
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def client(self, endpoint: str | None = None) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def storage_env(endpoint: str, root: str) -> dict[str, str]:
    """The environment a Bastion server needs to keep its tables at ``root`` on ``endpoint``."""
    return {
        "BASTION_TABLE_STORAGE": root,
        "BASTION_S3_ENDPOINT_URL": endpoint,
        "BASTION_S3_REGION": REGION,
        "BASTION_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "BASTION_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "BASTION_S3_ALLOW_HTTP": "true",
    }


def storage_settings(endpoint: str, root: str, **extra: object) -> dict[str, object]:
    """The same, as ``Settings`` keyword arguments."""
    return {
        "table_storage": root,
        "s3_endpoint_url": endpoint,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SECRET_KEY,
        "s3_allow_http": True,
        **extra,
    }


class Gate:
    """A TCP forwarder 127.0.0.1:port → ``target_port``, in a child process. ``close()`` drops
    every connection and refuses new ones until ``open()``: the object store during an outage.

    A child process, not a thread: delta-rs holds the GIL through some storage calls (listing
    a prefix, deleting objects), and a forwarder thread in the same process would stall behind
    the very request it is meant to forward.
    """

    def __init__(self, target_port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "gate", str(target_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._reply()
        if not line.startswith("port "):
            self.process.kill()
            raise RuntimeError("the gate did not start")
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._command("close")

    def open(self) -> None:
        self._command("open")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def _command(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()
        if self._reply() != "ok":
            raise RuntimeError(f"the gate did not {word}")

    def _reply(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()


class _Forwarder:
    """The gate's child: forwards connections while open, resets them while closed."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._open.clear()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def open(self) -> None:
        self._open.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # a reset: connection refused, as a store that is down
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self._target))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.update((client, upstream))
        try:
            while self._open.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.difference_update((client, upstream))
            client.close()
            upstream.close()


def _gate(target_port: int) -> None:
    forwarder = _Forwarder(target_port)
    print(f"port {forwarder.port}", flush=True)
    for line in sys.stdin:  # the test's commands; EOF (the test went away) ends the gate
        getattr(forwarder, line.strip())()
        print("ok", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["gate"]:
        _gate(int(sys.argv[2]))
    else:
        _serve()
