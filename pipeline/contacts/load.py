"""Load contact files into `targets` and `rejects` for one run.

Plain CSV files are staged by DuckDB directly (columnar.py), any other file streams Arrow
batches from sources.py into the same staging table; validation, phone normalisation and
de-duplication then run as set operations in DuckDB. Every input row ends as at least one
target or as exactly one reject (DESIGN §7 rule 1), and the whole load is one transaction: a
file that cannot be read leaves nothing of the run half-loaded.

Reject reasons (also in docs/contacts.md):
    empty_row               every field is blank
    too_few_fields          fewer fields than the header
    too_many_fields         more fields than the header
    missing_identity        long form: a channel without an identity
    missing_channel         long form: an identity without a channel
    unknown_channel         the channel is not one of Sinch's channels
    invalid_phone           not a valid phone number for its country
    phone_without_country   a national number and no [contacts] default_region to place it
    invalid_identity        an app-scoped identity with spaces or over 256 characters
    duplicate               this contact and channel already came earlier in the run's input
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from pipeline.contacts.columnar import stage_literal_csv
from pipeline.contacts.phones import country_codes, fast_path_sql, normalise_phones
from pipeline.contacts.sources import (
    LONG,
    SCHEMA,
    ColumnNames,
    csv_shape,
    read_file,
    resolve_paths,
)
from pipeline.db import sql_literal, transaction
from pipeline.errors import EmptyInput
from pipeline.settings import ContactsSettings
from pipeline.sinch.models import CHANNELS, PHONE_CHANNELS

REJECT_REASONS = (
    "empty_row",
    "too_few_fields",
    "too_many_fields",
    "missing_identity",
    "missing_channel",
    "unknown_channel",
    "invalid_phone",
    "phone_without_country",
    "invalid_identity",
    "duplicate",
)
MAX_IDENTITY_LENGTH = 256
TEMP_TABLES = ("staged", "staged_files", "decided", "repeated", "ranked", "pending_phones")
PENDING = "pending_phone"  # internal: a number the fast path left to phonenumbers
CONTACT_KEY = "coalesce(cid, norm_identity)"  # of a `decided` row: computed, not stored
UNKNOWN_COUNTRY = "unknown"  # targets.country of a contact asked by contact id or app identity


@dataclass
class LoadSummary:
    rows: int = 0
    targets: int = 0
    contacts: int = 0
    rejects: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def column_names(settings: ContactsSettings) -> ColumnNames:
    return ColumnNames(
        contact_id=settings.contact_id_column,
        phone=settings.phone_column,
        channel=settings.channel_column,
        identity=settings.identity_column,
    )


def load_contacts(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: ContactsSettings,
    paths: Sequence[str] | None = None,
    progress: Callable[[LoadProgress], None] | None = None,
) -> LoadSummary:
    """Replace the run's targets and rejects with those of `paths` (default: settings.paths).

    Staging and validation commit as they go into temporary tables (so DuckDB can spill them
    and memory stays bounded); only the final replacement of the run's targets and rejects is
    one transaction, so a file that fails leaves the run's rows as they were.
    """
    summary = LoadSummary()
    _stage(conn, paths or settings.paths, column_names(settings), summary, progress)
    _validate(conn, settings)
    try:
        with transaction(conn):
            summary.targets = _write(conn, run_id)
        _summarise(conn, run_id, settings, summary)
    finally:
        for table in (*TEMP_TABLES, "pending_phones_normalised"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return summary


@dataclass
class LoadProgress:
    """How far reading the files has got: rows, rows already known bad, bytes of all files."""

    rows: int = 0
    rejects: int = 0
    bytes_read: int = 0
    bytes_total: int = 0


def _stage(
    conn: duckdb.DuckDBPyConnection,
    paths: Sequence[str],
    names: ColumnNames,
    summary: LoadSummary,
    progress: Callable[[LoadProgress], None] | None,
) -> None:
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE staged (file_index INTEGER, "
        + ", ".join(f"{f.name} {_duck_type(f.type)}" for f in SCHEMA)
        + ")"
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE staged_files (file_index INTEGER, source VARCHAR, "
        "form VARCHAR)"
    )
    seen: dict[str, int] = {}
    files = resolve_paths(paths)
    state = LoadProgress(bytes_total=sum(p.stat().st_size for p in files))
    report = progress or (lambda state: None)
    for path in files:
        source, file_index = str(path), len(seen)
        if source in seen:
            continue
        seen[source] = file_index
        read_before = state.bytes_read
        shape = csv_shape(path, names)
        rows = stage_literal_csv(conn, shape, file_index) if shape else None
        if rows is not None and shape is not None:
            _add_file(conn, file_index, source, shape.form)
            summary.rows += rows
            state.rows, state.bytes_read = summary.rows, read_before + path.stat().st_size
            report(state)
            continue
        for piece in read_file(path, names):
            if piece.batch.num_rows == 0:
                continue
            _add_file(conn, file_index, source, piece.form)
            conn.register("batch", pa.Table.from_batches([piece.batch]))
            conn.execute(f"INSERT INTO staged SELECT {file_index}, * FROM batch")
            conn.unregister("batch")
            summary.rows += piece.batch.num_rows
            problems = piece.batch.column("problem")
            state.rejects += len(problems) - problems.null_count
            state.rows, state.bytes_read = summary.rows, read_before + piece.bytes_read
            report(state)
    summary.sources = list(seen)
    if not summary.rows:
        raise EmptyInput(", ".join(paths), "no rows: the files hold a header only")


def _add_file(conn: duckdb.DuckDBPyConnection, file_index: int, source: str, form: str) -> None:
    conn.execute(
        "INSERT INTO staged_files SELECT ?, ?, ? WHERE NOT EXISTS "
        "(SELECT 1 FROM staged_files WHERE file_index = ?)",
        [file_index, source, form, file_index],
    )


def _duck_type(arrow_type: pa.DataType) -> str:
    return "BIGINT" if arrow_type == pa.int64() else "VARCHAR"


def _validate(conn: duckdb.DuckDBPyConnection, settings: ContactsSettings) -> None:
    channels = ", ".join(f"'{c}'" for c in CHANNELS)
    phone_channels = ", ".join(f"'{c}'" for c in sorted(PHONE_CHANNELS))
    # 1. Tidy each row and find the phone numbers to normalise.
    conn.execute(f"""
        CREATE OR REPLACE TEMP VIEW tidy AS
        SELECT s.*, f.source,
            nullif(trim(s.contact_id), '') AS cid,
            nullif(upper(trim(s.channel)), '') AS chan,
            nullif(trim(coalesce(s.phone, s.identity)), '') AS ident,
            f.form = '{LONG}' AS is_long
        FROM staged s JOIN staged_files f USING (file_index)
    """)
    # 2. Decide each row: a reject reason, or what it asks for. Phone numbers go through the
    #    vectorised fast path row by row (no DISTINCT over millions of mostly unique numbers);
    #    those it cannot decide are marked PENDING (keeping their text) and settled below.
    #    Only what the targets need is kept; rejects (few) take their raw values from `staged`.
    is_phone = f"(NOT t.is_long OR t.chan IN ({phone_channels}))"
    conn.execute(f"""
        CREATE OR REPLACE TEMP VIEW phone_rows AS
        SELECT ident AS raw FROM tidy t
        WHERE problem IS NULL AND ident IS NOT NULL AND {is_phone}
    """)
    codes = country_codes(conn, "phone_rows", settings.default_region)
    fast = fast_path_sql(
        f"(SELECT * EXCLUDE (raw), CASE WHEN {is_phone} THEN ident END AS raw FROM tidy t)",
        settings.default_region,
        codes,
    )
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE decided AS
        SELECT file_index, row_number, cid, chan, is_long, reason, norm_identity,
            CASE WHEN reason = '{PENDING}' THEN ident END AS ident,
            country  -- NULL but for phone numbers (only their rows have a `raw` to decide)
        FROM (
            SELECT t.file_index, t.row_number, t.cid, t.chan, t.is_long, t.ident,
                CASE
                    WHEN t.problem IS NOT NULL THEN t.problem
                    WHEN t.ident IS NULL AND t.chan IS NULL THEN
                        CASE WHEN t.cid IS NULL THEN 'empty_row' END
                    WHEN t.is_long AND t.chan IS NULL THEN 'missing_channel'
                    WHEN t.is_long AND t.chan NOT IN ({channels}) THEN 'unknown_channel'
                    WHEN t.is_long AND t.ident IS NULL THEN 'missing_identity'
                    WHEN {is_phone} THEN CASE WHEN t.e164 IS NULL THEN '{PENDING}' END
                    WHEN length(t.ident) > {MAX_IDENTITY_LENGTH}
                        OR regexp_matches(t.ident, '\\s') THEN 'invalid_identity'
                END AS reason,
                CASE
                    WHEN t.ident IS NULL THEN NULL
                    WHEN {is_phone} THEN t.e164
                    ELSE t.ident
                END AS norm_identity,
                t.country
            FROM ({fast}) t
        )
    """)
    _settle_pending_phones(conn, settings.default_region)
    # 3. Expand accepted rows to one candidate target per channel asked.
    conn.execute(f"""
        CREATE OR REPLACE TEMP VIEW candidates AS
        SELECT file_index, row_number, cid AS contact_id, {CONTACT_KEY} AS contact_key,
            unnest({_asked_sql(settings)}) AS channel, norm_identity AS identity,
            coalesce(country, '{UNKNOWN_COUNTRY}') AS country
        FROM decided WHERE reason IS NULL
    """)
    # 4. The contacts that more than one accepted row names (and how many rows).
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE repeated AS
        SELECT {CONTACT_KEY} AS contact_key, count(*) AS rows FROM decided
        WHERE reason IS NULL AND len({_asked_sql(settings)}) > 0
        GROUP BY contact_key HAVING count(*) > 1
    """)


def _settle_pending_phones(conn: duckdb.DuckDBPyConnection, default_region: str) -> None:
    """The numbers the fast path left undecided (few): once each through normalise_phones."""
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE pending_phones AS "
        f"SELECT DISTINCT ident AS raw FROM decided WHERE reason = '{PENDING}'"
    )
    normalised = normalise_phones(conn, "pending_phones", default_region)
    conn.execute(f"""
        UPDATE decided SET reason = p.reason, norm_identity = p.e164, country = p.country
        FROM {normalised} p WHERE decided.reason = '{PENDING}' AND p.raw = decided.ident
    """)


def _asked_sql(settings: ContactsSettings) -> str:
    """The channels an accepted row of `decided` asks on."""
    wide = _channel_list(settings.phone_channels)
    by_id = _channel_list(settings.contact_id_channels)
    return f"CASE WHEN norm_identity IS NULL THEN {by_id} WHEN is_long THEN [chan] ELSE {wide} END"


def _channel_list(values: Sequence[str]) -> str:
    # a channel listed twice is asked once
    return sql_literal(list(dict.fromkeys(v.upper() for v in values)))


def _write(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Replace the run's targets and rejects; the number of targets."""
    conn.execute("DELETE FROM targets WHERE run_id = $run_id", {"run_id": run_id})
    conn.execute("DELETE FROM rejects WHERE run_id = $run_id", {"run_id": run_id})
    # The first occurrence of a (contact, channel) wins; later ones are duplicates. Only the
    # contacts in `repeated` can have any: ranking just their candidates spares a sort of
    # every target.
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE ranked AS
        SELECT *, row_number() OVER (
            PARTITION BY contact_key, channel ORDER BY file_index, row_number) AS occurrence
        FROM candidates SEMI JOIN repeated USING (contact_key)
    """)
    conn.execute("DELETE FROM target_files WHERE run_id = $run_id", {"run_id": run_id})
    conn.execute(
        "INSERT INTO target_files SELECT $run_id, file_index, source FROM staged_files",
        {"run_id": run_id},
    )
    targets = conn.execute(
        """
        INSERT INTO targets (run_id, contact_id, channel, identity, file_index, row_number,
            country)
        SELECT $run_id, contact_id, channel, identity, file_index, row_number, country
        FROM (
            SELECT * FROM candidates ANTI JOIN repeated USING (contact_key)
            UNION ALL
            SELECT * EXCLUDE (occurrence) FROM ranked WHERE occurrence = 1
        )
        """,
        {"run_id": run_id},
    ).fetchone()
    conn.execute(
        """
        INSERT INTO rejects
        SELECT $run_id, f.source, s.row_number, r.reason, NULL, s.contact_id, s.phone,
            s.channel, s.identity, CASE WHEN r.raw_line THEN s.raw END
        FROM (
            SELECT file_index, row_number, reason, true AS raw_line
            FROM decided WHERE reason IS NOT NULL
            UNION ALL
            SELECT file_index, row_number, 'duplicate', false FROM ranked
            GROUP BY file_index, row_number HAVING min(occurrence) > 1
        ) r
        JOIN staged s USING (file_index, row_number)
        JOIN staged_files f USING (file_index)
        """,
        {"run_id": run_id},
    )
    return int(targets[0]) if targets else 0


def _summarise(
    conn: duckdb.DuckDBPyConnection, run_id: str, settings: ContactsSettings, summary: LoadSummary
) -> None:
    # Rows asking something, less the extra rows of contacts named more than once: no
    # count(DISTINCT) over every contact.
    row = conn.execute(
        f"SELECT (SELECT count(*) FROM decided "
        f"WHERE reason IS NULL AND len({_asked_sql(settings)}) > 0) "
        f"- (SELECT coalesce(sum(rows - 1), 0) FROM repeated)"
    ).fetchone()
    summary.contacts = int(row[0]) if row else 0
    reasons = conn.execute(
        "SELECT reason, count(*) FROM rejects WHERE run_id = $run_id GROUP BY reason "
        "ORDER BY count(*) DESC",
        {"run_id": run_id},
    ).fetchall()
    summary.rejects_by_reason = {str(r): int(n) for r, n in reasons}
    summary.rejects = sum(summary.rejects_by_reason.values())
