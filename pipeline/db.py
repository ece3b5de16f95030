"""DuckDB idioms every module uses, written once: a transaction, a SQL literal, rows as dicts,
a fingerprint of rows.

with transaction(conn):
    conn.execute(f"DELETE FROM t WHERE source IN {sql_literal(paths)}")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


def sql_literal(value: str | bool | tuple[str, ...] | list[str]) -> str:
    """A constant written into SQL where a parameter cannot go, or where the planner should
    see the value (to prune by it, or to fold it away). As in Python: a str is `'it''s'`, a
    bool `true`, a tuple the list of an IN, `('a', 'b')` (`(NULL)` when empty, matching
    nothing), a list a VARCHAR list, `['a', 'b']::VARCHAR[]`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    items = ", ".join(sql_literal(v) for v in value)
    if isinstance(value, list):
        return f"[{items}]::VARCHAR[]"
    return f"({items or 'NULL'})"


def rows_as_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query, each as {column: value}."""
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def rows_fingerprint(
    conn: duckdb.DuckDBPyConnection, select_sql: str, params: dict[str, Any] | None = None
) -> str:
    """The rows of `select_sql` summed up: their number and the sum of their hashes, equal
    whatever their order (about 0.2 s for 10M targets); `rows:hash`."""
    row = conn.execute(f"SELECT count(*), sum(hash(r)) FROM ({select_sql}) r", params).fetchone()
    return f"{row[0]}:{row[1]}" if row else ""
