"""PostgreSQL databases for a pair of team servers: the store URIs MLflow and Prefect take, and databases
created and dropped by name (the integration tests and `bench/team_servers.py` make their own, uniquely
named, and drop them after).

MLflow's store takes `postgresql+psycopg2://` (with SQLAlchemy 2.1 a bare `postgresql://` looks for
psycopg 3); Prefect's takes `postgresql+asyncpg://`. Both drivers come with `pip install 'tickerflow[postgres]'`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

CONNECT_SECONDS = 3


@dataclass(frozen=True)
class PostgresAddress:
    """Where a PostgreSQL server listens and who connects: `postgresql://USER[:PASSWORD]@HOST:PORT`."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""

    @classmethod
    def parse(cls, url: str) -> "PostgresAddress":
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ValueError(f"a PostgreSQL address is postgresql://USER@HOST:PORT, got {url!r}")
        return cls(parts.hostname, parts.port or 5432, parts.username or "postgres", parts.password or "")

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, driver: str, database: str) -> str:
        """A SQLAlchemy URL of `database` with `driver` (psycopg2, asyncpg)."""
        secret = f":{self.password}" if self.password else ""
        return f"postgresql+{driver}://{self.user}{secret}@{self.host}:{self.port}/{database}"

    def mlflow_store_uri(self, database: str) -> str:
        return self.url("psycopg2", database)

    def prefect_database_url(self, database: str) -> str:
        return self.url("asyncpg", database)

    def _connect(self, database: str = "postgres"):
        import psycopg2  # (the postgres extra: only where PostgreSQL is used)

        connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=database,
            connect_timeout=CONNECT_SECONDS,
        )
        connection.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
        return connection

    def problem(self) -> str | None:
        """Why this server cannot be used now (one line), or None when a connection succeeds."""
        try:
            self._connect().close()
        except ImportError:
            return "psycopg2 is not installed (pip install 'tickerflow[postgres]')"
        except Exception as exc:  # noqa: BLE001 - any failure to connect is the answer
            return " ".join(str(exc).split()) or type(exc).__name__
        return None

    def _execute(self, statement: str, *args: str) -> list[tuple]:
        """One statement on the `postgres` database, in a connection of its own; the rows it returns."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, args or None)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def create_database(self, name: str) -> None:
        self._execute(f'CREATE DATABASE "{_checked(name)}"')

    def drop_database(self, name: str) -> None:
        """Drop it even while servers that were killed still hold connections (PostgreSQL 13+: FORCE)."""
        self._execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')

    def databases(self, prefix: str) -> list[str]:
        return sorted(
            row[0] for row in self._execute("SELECT datname FROM pg_database WHERE datname LIKE %s", f"{prefix}%")
        )


def _checked(name: str) -> str:
    """A database name made by `unique_names`: lower-case letters, digits and underscores only."""
    if not name or not all(c.isascii() and (c.isalnum() or c == "_") for c in name) or name.lower() != name:
        raise ValueError(f"database names are lower-case letters, digits and underscores, got {name!r}")
    return name


def unique_names(prefix: str = "tf") -> tuple[str, str]:
    """(MLflow's, Prefect's) database names for one pair of servers: `<prefix>_<pid>_<hex>_mlflow`, ..."""
    stem = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    return f"{stem}_mlflow", f"{stem}_prefect"
