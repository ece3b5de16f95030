"""The fast way in for plain CSV files: DuckDB reads and splits the lines, no Python per row.

A file whose text holds no quote character, no stray carriage return and no NUL is split by
Python's `csv` module exactly as by its delimiter, so DuckDB can stage it with the very rows,
line numbers, structural reject reasons and raw text that `sources._csv_batches` would give.
Any other file (quotes, mixed line ends, text that is not UTF-8, corrupt gzip, a line longer
than the `csv` module accepts) is left to that exact line-by-line path, which also words the
errors: `stage_literal_csv` then returns None having staged nothing.

    rows = stage_literal_csv(conn, csv_shape(path, names), file_index=0)   # None: read it slowly
"""

from __future__ import annotations

import csv
import functools

import duckdb

from pipeline.contacts.sources import EMPTY_ROW, ROLES, TOO_FEW_FIELDS, TOO_MANY_FIELDS, CsvShape
from pipeline.db import sql_literal

# Lines that the plain split would read differently from the csv module (see the docstring).
NOT_LITERAL = (
    "contains(line, '\"') OR contains(line, chr(13)) OR contains(line, chr(10)) "
    "OR contains(line, chr(0)) OR length(line) > $max_field"
)


@functools.cache
def _python_whitespace() -> str:
    """An RE2 class body of what `str.strip()` strips (Unicode whitespace, not only ' ')."""
    spaces = (chr(c) for c in range(0x3001) if chr(c).isspace())
    return "".join(f"\\x{{{ord(c):04X}}}" for c in spaces)


def _read_lines_sql(shape: CsvShape) -> str:
    compression = "gzip" if shape.compressed else "none"
    # \x01 as the delimiter and no quote: one VARCHAR column holding each line as it stands
    # (a line holding \x01 fails the read, and the file goes the exact way).
    return f"""
        SELECT line FROM read_csv($path, columns = {{'line': 'VARCHAR'}}, delim = '\x01',
            quote = '', escape = '', header = false, auto_detect = false,
            compression = '{compression}')
    """


def stage_literal_csv(
    conn: duckdb.DuckDBPyConnection, shape: CsvShape, file_index: int
) -> int | None:
    """Append the file's rows to `staged`; the number of rows, or None if it is not literal."""
    if not shape.literal:
        return None
    order = conn.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    conn.execute("SET preserve_insertion_order = true")  # rowid = line number - 1
    try:
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE csv_lines AS {_read_lines_sql(shape)}",
            {"path": shape.source},
        )
        literal = conn.execute(
            f"SELECT NOT coalesce(bool_or({NOT_LITERAL}), false) FROM csv_lines",
            {"max_field": csv.field_size_limit()},
        ).fetchone()
        if not (literal and literal[0]):
            return None
        row = conn.execute(_insert_sql(shape, file_index)).fetchone()
        return int(row[0]) if row else 0
    except duckdb.Error:
        return None  # the exact path reads it again and says what is wrong, where
    finally:
        conn.execute("DROP TABLE IF EXISTS csv_lines")
        conn.execute(f"SET preserve_insertion_order = {bool(order and order[0])}")


def _insert_sql(shape: CsvShape, file_index: int) -> str:
    """Rows as `_csv_batches` builds them: fields by position, NULL past the end of the row;
    a structural problem keeps the line's text (a blank line has none: '')."""
    delimiter = sql_literal(shape.delimiter)
    blank = f"regexp_full_match(line, '[{_python_whitespace()}{_re2_escape(shape.delimiter)}]*')"
    values = ", ".join(
        f"CASE WHEN fields > {shape.columns[role]} THEN parts[{shape.columns[role] + 1}] END"
        if role in shape.columns
        else "NULL"
        for role in ROLES
    )
    return f"""
        INSERT INTO staged
        SELECT {file_index}, row_number, {values}, problem,
            CASE WHEN problem IS NOT NULL THEN coalesce(line, '') END
        FROM (
            SELECT *, CASE
                WHEN line IS NULL OR {blank} THEN '{EMPTY_ROW}'
                WHEN fields < {shape.width} THEN '{TOO_FEW_FIELDS}'
                WHEN fields > {shape.width} THEN '{TOO_MANY_FIELDS}'
            END AS problem
            FROM (
                SELECT rowid + 1 AS row_number, line, string_split(line, {delimiter}) AS parts,
                    coalesce(len(parts), 0) AS fields
                FROM csv_lines WHERE rowid > 0
            )
        )
    """


def _re2_escape(char: str) -> str:
    return f"\\x{{{ord(char):04X}}}"
