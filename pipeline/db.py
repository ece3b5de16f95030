"""DuckDB idioms every module uses, written once: a transaction, a SQL literal, rows as dicts.

with transaction(conn):
    conn.execute(f"DELETE FROM t WHERE source IN {sql_literal(paths)}")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb


@contextlib.contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT, or ROLLBACK when anything (KeyboardInterrupt too) escapes."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def sql_literal(value: str | bool | Sequence[str]) -> str:
    """A value written into SQL where a parameter cannot go (a list the planner prunes by, a
    view's body, a file path in COPY): `'it''s'`, `true`, `('a', 'b')` (`(NULL)` when empty)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "(" + (", ".join(sql_literal(v) for v in value) or "NULL") + ")"


def rows_as_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query, each as {column: value}."""
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
