"""A PEP 249 (DB-API 2.0) client for Bastion's SQL, shaped like Databricks' SQL connector.

>>> from bastion import sql
>>> with sql.connect(server_hostname="127.0.0.1:8000", access_token=token) as conn:
...     with conn.cursor() as cursor:
...         cursor.execute("SELECT * FROM main.default.t WHERE id = :id", {"id": 1})
...         rows = cursor.fetchall()
"""

from __future__ import annotations

from bastion.sql.dbapi import (
    Connection,
    Cursor,
    DatabaseError,
    Error,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Row,
    connect,
)

apilevel = "2.0"
threadsafety = 1
paramstyle = "named"

__all__ = [
    "Connection",
    "Cursor",
    "DatabaseError",
    "Error",
    "InterfaceError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Row",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]
