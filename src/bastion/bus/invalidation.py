"""Cache invalidation pushed to every replica over Redis pub/sub.

Each replica caches identities, token hashes, grants and routing plans in memory, rebuilt
when the metastore's *generation* moves (:class:`bastion.metastore.db.Metastore`). A commit
bumps the generation of the process that made it at once; the other replicas used to learn
of it only by polling the change counter. With Redis, the committing process also publishes
one message on :data:`CHANNEL` and every other replica bumps its generation when the message
arrives — milliseconds, not a poll interval — so a token revoked or a grant removed through
one replica is refused by all of them on their next request.

Polling stays on as the backstop: a message lost while a subscriber reconnects is caught by
the next poll, and after each subscription — the first one included, as a replica caches
while it starts — the subscriber invalidates once anyway (it may have missed messages). A
publish that fails is retried (for up to a minute), so the others hear of the change as soon
as Redis is back.

>>> bus = Invalidator("redis://127.0.0.1:6379/0", on_remote_change=metastore.invalidate)
>>> bus.start()
>>> metastore.add_change_listener(bus.publish)   # every local commit is announced
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from bastion.bus.connection import RedisHealth, sync_client

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

CHANNEL = "bastion:invalidate"
_STOP = object()


class Invalidator:
    """Publishes this process's metastore changes and applies other processes' changes.

    ``on_remote_change`` runs on the subscriber thread for every message from another
    process (and once after each subscription); it must be quick (bump a counter).
    """

    def __init__(
        self,
        url: str,
        on_remote_change: Callable[[], None],
        *,
        health: RedisHealth | None = None,
        channel: str = CHANNEL,
        reconnect_backoff_s: float = 0.5,
        give_up_s: float = 60.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.health = health or RedisHealth(url)
        self.on_remote_change = on_remote_change
        self.reconnect_backoff_s = reconnect_backoff_s
        self.give_up_s = give_up_s
        self.published = 0
        self.received = 0
        self._client: redis.Redis = sync_client(url)
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- publishing -------------------------------------------------------------------------

    def publish(self, scope: str = "metastore") -> None:
        """Announce a committed change (returns at once; a thread sends it)."""
        self._outbox.put(scope)

    def _publish_loop(self) -> None:
        failed_since: float | None = None
        while True:
            item = self._outbox.get()
            if item is _STOP:
                return
            while not self._outbox.empty():  # one message announces any number of changes
                if self._outbox.get() is _STOP:
                    self._outbox.put(_STOP)
                    break
            message = orjson.dumps({"origin": self.origin, "scope": item})
            try:
                self._client.publish(self.channel, message)
                self.published += 1
                failed_since = None
            except Exception as exc:
                self.health.failed("invalidation_publish")
                self.health.fell_back("invalidation_publish", "polling")
                logger.warning(
                    "could not publish a cache invalidation to %s (%s); retrying (other "
                    "replicas also see the change when they poll)",
                    self.health.url,
                    type(exc).__name__,
                )
                now = time.monotonic()
                failed_since = failed_since if failed_since is not None else now
                if now - failed_since < self.give_up_s and not self._stop.is_set():
                    self._stop.wait(self.reconnect_backoff_s)
                    self._outbox.put(item)  # announce it late rather than never

    # -- subscribing ------------------------------------------------------------------------

    def _subscribe_loop(self) -> None:
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                # Messages sent before this subscription never arrive: while away, and at
                # first while this replica was starting and already caching.
                self.on_remote_change()
                self._subscribed.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        self._received(message.get("data"))
            except Exception as exc:
                self._subscribed.clear()
                self.health.failed("invalidation_subscribe")
                self.health.fell_back("invalidation_subscribe", "polling")
                logger.warning(
                    "cache invalidation subscription to %s lost (%s); polling the metastore "
                    "until it is back",
                    self.health.url,
                    type(exc).__name__,
                )
                self._stop.wait(self.reconnect_backoff_s)
            finally:
                try:
                    pubsub.close()
                except Exception:  # closing a broken connection
                    logger.debug("closing the pub/sub connection failed", exc_info=True)

    def _received(self, data: object) -> None:
        try:
            message = orjson.loads(data if isinstance(data, (bytes, str)) else b"{}")
        except orjson.JSONDecodeError:
            logger.warning("ignoring a malformed cache invalidation message")
            return
        if not isinstance(message, dict) or message.get("origin") == self.origin:
            return
        self.received += 1
        self.on_remote_change()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, *, wait_s: float = 2.0) -> Invalidator:
        """Start the publisher and subscriber threads; wait up to ``wait_s`` for the
        subscription (a replica that starts while Redis is down keeps trying)."""
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._publish_loop, name="bastion-bus-pub", daemon=True),
                threading.Thread(target=self._subscribe_loop, name="bastion-bus-sub", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
            self._subscribed.wait(wait_s)
        return self

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def close(self) -> None:
        self._stop.set()
        self._outbox.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self._client.close()
