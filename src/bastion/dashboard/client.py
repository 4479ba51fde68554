"""The dashboard's only way to data: the viewer's own token, over HTTP — governed SQL through
``bastion.sql`` and the REST API. Never the app's service principal, never files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa

from bastion import sql
from bastion.sql.dbapi import tls_context

#: Local development only: a token to use when the page is not opened through the proxy.
DEV_TOKEN_VARIABLE = "BASTION_DASHBOARD_DEV_TOKEN"


class DashboardError(Exception):
    """A failure to show as an error state (never a stack trace)."""


class NoAccess(DashboardError):
    """The viewer's grants do not cover this (403, or a table they may not see)."""


class SignedOut(DashboardError):
    """The forwarded token expired or its session ended: reload the page."""


_NO_ACCESS_CODES = ("PERMISSION_DENIED", "TABLE_OR_VIEW_NOT_FOUND")


@dataclass(frozen=True)
class Viewer:
    """Who is looking, and the token that *is* them."""

    host: str
    token: str
    user: str

    @property
    def cache_key(self) -> str:
        """Every cache is keyed by this: the user and their current token."""
        return hashlib.sha256(f"{self.user}\0{self.token}".encode()).hexdigest()

    @classmethod
    def from_request(cls, headers: Mapping[str, str], env: Mapping[str, str]) -> Viewer | None:
        """The forwarded token from the proxy; in local development, a token from the
        environment. None: fail closed (the app's own credentials are never used)."""
        host = env.get("BASTION_HOST") or env.get("DATABRICKS_HOST") or "http://127.0.0.1:8000"
        token = headers.get("x-forwarded-access-token") or headers.get("X-Forwarded-Access-Token")
        user = headers.get("x-forwarded-user") or headers.get("X-Forwarded-User") or ""
        if token:
            return cls(host.rstrip("/"), token, user)
        dev = env.get(DEV_TOKEN_VARIABLE)
        if dev:
            return cls(host.rstrip("/"), dev, user or "local developer")
        return None

    # -- SQL ----------------------------------------------------------------------------------

    def query(self, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        try:
            with (
                sql.connect(server_hostname=self.host, access_token=self.token) as connection,
                connection.cursor() as cursor,
            ):
                cursor.execute(statement, dict(params or {}))
                table = cursor.fetchall_arrow()
        except sql.Error as error:
            raise _mapped(str(error), getattr(error, "error_code", None)) from None
        except httpx.HTTPError as error:
            raise DashboardError(f"Bastion did not answer: {error}") from None
        return _to_frame(table)

    # -- REST ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(
                method,
                self.host + path,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=60,
                verify=tls_context(),
                **kwargs,
            )
        except httpx.HTTPError as error:
            raise DashboardError(f"Bastion did not answer: {error}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            message = str(body.get("message") or response.text[:300])
            if response.status_code == 401:
                raise SignedOut(message)
            if response.status_code in (403, 404):
                raise NoAccess(message)
            raise DashboardError(message)
        return response.json() if response.content else {}


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas, with SQL's exact numbers (decimals, 128-bit sums) as floats a chart
    can plot."""
    fields = []
    for field in table.schema:
        if pa.types.is_decimal(field.type):
            fields.append(pa.field(field.name, pa.float64()))
        else:
            fields.append(field)
    return table.cast(pa.schema(fields)).to_pandas()


def _mapped(message: str, code: str | None) -> DashboardError:
    if code == "UNAUTHENTICATED" or "UNAUTHENTICATED" in message:
        return SignedOut(message)
    if code in _NO_ACCESS_CODES or any(c in message for c in _NO_ACCESS_CODES):
        return NoAccess(message)
    if "does not have" in message or "may not" in message:
        return NoAccess(message)
    return DashboardError(message)


def dev_environment() -> dict[str, str]:
    return dict(os.environ)
