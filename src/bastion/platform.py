"""The services of one Bastion process, wired together once from :class:`Settings`."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

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
from bastion.metastore.db import Metastore, create_metastore_engine, upgrade
from bastion.settings import Settings
from bastion.tables.storage import TableStorage
from bastion.tables.writer import DurableWriter


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
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        # Owner-only: the metastore, the signing key, staged uploads and every table live here.
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Every Delta table: BASTION_HOME/warehouse or an object store (docs/storage.md).
        self.table_storage = TableStorage.from_settings(settings)
        self.table_storage.check()
        engine = create_metastore_engine(settings.resolved_database_url)
        upgrade(engine)
        self.metastore = Metastore(engine)
        self.identity = IdentityStore(self.metastore, self.clock)
        self.governance = GovernanceStore(self.metastore, self.clock)
        self.identity_cache = IdentityCache(self.metastore, self.clock)
        self.codec = JwtCodec(load_or_create_key(settings.resolved_secret_key_file), self.clock)
        self.authenticator = Authenticator(self.identity_cache, self.codec, self.clock)
        self.authorizer = Authorizer(self.metastore, on_decision=self._audit_decision)
        self.writer = DurableWriter(
            settings.home / "wal",
            flush_rows=settings.writer_flush_rows,
            flush_interval_s=settings.writer_flush_interval_s,
            clock=self.clock,
        )
        self.audit = DeltaAuditSink(self.writer, self.table_storage)
        self.throttle = LoginThrottle(
            self.clock, settings.login_max_failures, settings.login_lockout_s
        )

    def start(self) -> None:
        self.metastore.start_polling(self.settings.cache_poll_interval_s)
        self.writer.start()

    def close(self) -> None:
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
