"""What replicas share through Redis: connections, their health, and cache invalidation.

Only a deployment that sets ``BASTION_REDIS_URL`` uses this package; the embedded default
(one host, no Redis) never imports ``redis`` at all. :mod:`.connection` makes clients (sync
for threads, asyncio for the gateway) with short timeouts and a URL that is safe to log;
:class:`RedisHealth` counts what failed, for ``/metrics``; :class:`Invalidator` publishes
"the metastore changed" after every local commit and bumps this process's cache generation
when another replica publishes one.
"""

from __future__ import annotations

from bastion.bus.connection import RedisHealth, redacted_url
from bastion.bus.invalidation import CHANNEL, Invalidator

__all__ = ["CHANNEL", "Invalidator", "RedisHealth", "redacted_url"]
