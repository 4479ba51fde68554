"""The services of one Bastion process, wired together once from :class:`Settings`."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from bastion.bus import Invalidator, RedisHealth
from bastion.clock import Clock, SystemClock, now_ms
from bastion.governance.audit import AuditEvent, DeltaAuditSink
from bastion.governance.authorizer import Authorizer
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GovernanceStore
from bastion.identity.authn import Authenticator, IdentityCache
from bastion.identity.jwt_codec import JwtCodec, load_or_create_key
from bastion.identity.model import Caller
from bastion.identity.store import IdentityStore
from bastion.identity.throttle import LoginThrottle
from bastion.metastore.db import Metastore, create_metastore_engine, upgrade, wait_for_schema
from bastion.settings import Settings
from bastion.tables.slots import open_slot
from bastion.tables.storage import TableStorage


@dataclass(frozen=True)
class RequestInfo:
    """What the audit trail needs to know about the request being served."""

    request_id: str
    source_ip: str | None
    user_agent: str | None


current_request: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "bastion_current_request", default=None
)


class Platform:
    """``migrate=False`` (a replica joining a deployment, ``bastion serve``): wait for the
    schema another process migrates instead of migrating."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, *, migrate: bool = True
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        # Owner-only: the metastore, the signing key, staged uploads and every table live here.
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Every Delta table: BASTION_HOME/warehouse or an object store (docs/storage.md).
        self.table_storage = TableStorage.from_settings(settings)
        self.table_storage.check()
        engine = create_metastore_engine(settings.resolved_database_url)
        if migrate:
            upgrade(engine)
        else:
            wait_for_schema(engine)
        self.metastore = Metastore(engine)
        self.identity = IdentityStore(self.metastore, self.clock)
        self.governance = GovernanceStore(self.metastore, self.clock)
        self.identity_cache = IdentityCache(self.metastore, self.clock)
        self.codec = JwtCodec(load_or_create_key(settings.resolved_secret_key_file), self.clock)
        self.authenticator = Authenticator(self.identity_cache, self.codec, self.clock)
        self.authorizer = Authorizer(self.metastore, on_decision=self._audit_decision)
        # Each process its own write-ahead log: the lowest slot no live process holds.
        self.writer, self.wal_slot = open_slot(
            settings.resolved_wal_dir,
            flush_rows=settings.writer_flush_rows,
            flush_interval_s=settings.writer_flush_interval_s,
            commit_process=settings.writer_commit_process,
            commit_nice=settings.writer_commit_nice,
            clock=self.clock,
        )
        self.audit = DeltaAuditSink(self.writer, self.table_storage)
        self.throttle = LoginThrottle(
            self.clock, settings.login_max_failures, settings.login_lockout_s
        )
        # Shared by replicas when configured: counters (serving) and cache invalidation.
        redis_url = settings.redis
        self.redis_health = RedisHealth(redis_url) if redis_url else None
        self.invalidator: Invalidator | None = None
        if redis_url:
            self.invalidator = Invalidator(
                redis_url, self.metastore.invalidate, health=self.redis_health
            )
            self.metastore.add_change_listener(self.invalidator.publish)

    def start(self) -> None:
        self.metastore.start_polling(self.settings.cache_poll_interval_s)
        if self.invalidator is not None:
            self.invalidator.start()
        self.writer.start()

    def close(self) -> None:
        if self.invalidator is not None:
            self.invalidator.close()
        self.audit.close()
        self.writer.close()
        self.metastore.close()

    def _audit_decision(
        self,
        caller: Caller,
        privilege: Privilege,
        securable_type: SecurableType,
        full_name: str,
        allowed: bool,
    ) -> None:
        info = current_request.get()
        self.audit.emit(
            AuditEvent(
                event_time=now_ms(self.clock),
                request_id=info.request_id if info else "",
                user_email=caller.name,
                service_name="unityCatalog",
                action_name="checkPrivilege",
                request_params={
                    "securable_type": securable_type.value,
                    "securable_full_name": full_name,
                    "privilege": privilege.value,
                    "result": "allowed" if allowed else "denied",
                },
                status_code=200 if allowed else 403,
                source_ip_address=info.source_ip if info else None,
                user_agent=info.user_agent if info else None,
                acting_app=caller.acting_app,
            )
        )
