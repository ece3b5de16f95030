"""Contact files as a stream of Arrow record batches of raw strings.

Accepts CSV (delimiter sniffed among `,` `;` tab `|`; quoted fields; UTF-8 with or without BOM;
LF or CRLF; optionally gzip-compressed) and Parquet, one file, several, or glob patterns. Every
batch carries the source file and each row's line number (Parquet: row number, from 1), and
rows that cannot be rows at all (blank, too few or too many fields) keep their raw text and a
reject reason instead of being dropped. Nothing is held whole in memory.

    for piece in read_sources(["data/sample/*.csv"], ColumnNames()):
        piece.source, piece.form, piece.batch.column("phone")   # pyarrow strings, null if missing
"""

from __future__ import annotations

import contextlib
import csv
import glob
import gzip
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputFileError

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

BATCH_ROWS = 100_000
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
WIDE, LONG = "wide", "long"
# Structural reject reasons found while reading (validation adds the others; see rejects.py).
EMPTY_ROW, TOO_FEW_FIELDS, TOO_MANY_FIELDS = "empty_row", "too_few_fields", "too_many_fields"
SCHEMA = pa.schema(
    [
        ("row_number", pa.int64()),
        ("contact_id", pa.string()),
        ("phone", pa.string()),
        ("channel", pa.string()),
        ("identity", pa.string()),
        ("problem", pa.string()),
        ("raw", pa.string()),
    ]
)
ROLES = ("contact_id", "phone", "channel", "identity")


@dataclass(frozen=True)
class ColumnNames:
    """Which input column plays which role (the `[contacts]` mapping)."""

    contact_id: str = "contact_id"
    phone: str = "phone"
    channel: str = "channel"
    identity: str = "identity"

    def locate(self, header: list[str], source: str) -> tuple[str, dict[str, int]]:
        """The form (wide or long) and each role's column index in `header`."""
        wanted = {role: getattr(self, role).strip().lower() for role in ROLES}
        lookup = {name.strip().lower(): index for index, name in enumerate(header)}
        found = {role: lookup[name] for role, name in wanted.items() if name in lookup}
        if "channel" in found and "identity" in found:
            return LONG, {r: i for r, i in found.items() if r != "phone"}
        if "phone" in found:
            return WIDE, {r: i for r, i in found.items() if r in ("contact_id", "phone")}
        if "contact_id" in found:
            return WIDE, {"contact_id": found["contact_id"]}
        raise InputFileError(
            source,
            f"no usable columns: need '{self.phone}' (wide form) or '{self.channel}' and "
            f"'{self.identity}' (long form), optionally '{self.contact_id}'; found {header}",
        )


def resolve_paths(patterns: Iterable[str]) -> list[Path]:
    """Expand globs; a pattern that matches nothing is an error naming it."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputFileError(pattern, "no file matches this pattern")
        if not glob.has_magic(pattern) and not Path(pattern).exists():
            raise InputFileError(pattern, "file not found")
        paths.extend(Path(m) for m in matches)
    if not paths:
        raise InputFileError("<contacts>", "no contact files given")
    return paths


@dataclass(frozen=True)
class SourceBatch:
    """Up to BATCH_ROWS rows of one file, with the file's name and form, and how many bytes of
    the file (as stored, compressed or not) are read with it: what load's progress counts."""

    source: str
    form: str
    batch: pa.RecordBatch
    bytes_read: int = 0


def read_sources(patterns: Iterable[str], names: ColumnNames) -> Iterator[SourceBatch]:
    for path in resolve_paths(patterns):
        yield from read_file(path, names)


def read_file(path: Path, names: ColumnNames) -> Iterator[SourceBatch]:
    magic = _magic(path)
    if magic == PARQUET_MAGIC:
        yield from _read_parquet(path, names)
    else:
        yield from _read_csv(path, names, compressed=magic.startswith(GZIP_MAGIC))


def _magic(path: Path) -> bytes:
    """The first bytes of the file, which tell Parquet, gzip and plain text apart."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            return handle.read(4)
    except FileNotFoundError as exc:
        raise InputFileError(source, "file not found") from exc
    except IsADirectoryError as exc:
        raise InputFileError(source, "is a directory, not a contact file") from exc
    except OSError as exc:
        raise InputFileError(source, f"cannot read ({exc.strerror})") from exc


# -- Parquet ------------------------------------------------------------------------------------


def _read_parquet(path: Path, names: ColumnNames) -> Iterator[SourceBatch]:
    source = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(source, f"not a readable Parquet file ({exc})") from exc
    form, columns = names.locate(parquet.schema_arrow.names, source)
    header = parquet.schema_arrow.names
    selected = [header[i] for i in columns.values()]
    next_row = 1
    size, rows = path.stat().st_size, max(1, parquet.metadata.num_rows)
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=selected):
            read = size * (next_row - 1 + batch.num_rows) // rows
            yield SourceBatch(source, form, _parquet_batch(batch, columns, header, next_row), read)
            next_row += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(source, f"Parquet data cannot be read ({exc})") from exc


def _parquet_batch(
    batch: pa.RecordBatch, columns: dict[str, int], header: list[str], first: int
) -> pa.RecordBatch:
    rows = batch.num_rows
    arrays: dict[str, pa.Array] = {
        "row_number": pa.array(range(first, first + rows), pa.int64()),
    }
    for role in ROLES:
        if role in columns:
            column = batch.column(header[columns[role]])
            arrays[role] = column.cast(pa.string()) if column.type != pa.string() else column
        else:
            arrays[role] = pa.nulls(rows, pa.string())
    arrays["problem"] = pa.nulls(rows, pa.string())
    arrays["raw"] = pa.nulls(rows, pa.string())
    return pa.record_batch([arrays[f.name] for f in SCHEMA], schema=SCHEMA)


# -- CSV ----------------------------------------------------------------------------------------


def _open_text(path: Path, compressed: bool) -> IO[str]:
    # The returned wrapper owns (and closes) the binary stream.
    binary = cast(IO[bytes], gzip.open(path, "rb") if compressed else path.open("rb"))  # noqa: SIM115
    # utf-8-sig drops a BOM; newline="" lets the csv module handle CRLF and quoted newlines.
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="strict", newline="")


def _stored_position(text: IO[str]) -> Callable[[], int]:
    """How far into the file as stored (the compressed bytes, for gzip) reading has got."""
    binary: Any = cast(io.TextIOWrapper, text).buffer
    return cast(Callable[[], int], getattr(binary, "fileobj", binary).tell)


def _sniff(sample: str, source: str) -> type[csv.Dialect] | csv.Dialect:
    first_line = sample.splitlines()[0] if sample else ""
    if not first_line.strip():
        raise InputFileError(source, "empty file: no header line")
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:
        # One column, or too few lines to be sure: pick the delimiter the header uses, if any.
        counts = {d: first_line.count(d) for d in DELIMITERS}
        delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","

        class Sniffed(csv.excel):
            pass

        Sniffed.delimiter = delimiter
        return Sniffed


@dataclass(frozen=True)
class CsvShape:
    """What the header of a CSV file says: enough to read the rest by another reader."""

    source: str
    form: str
    columns: dict[str, int]
    width: int
    delimiter: str
    compressed: bool
    literal: bool  # the sniffed dialect reads text without quote characters as it stands


def csv_shape(path: Path, names: ColumnNames) -> CsvShape | None:
    """The shape of a CSV file (None for Parquet); header problems raise InputFileError."""
    magic = _magic(path)
    if magic == PARQUET_MAGIC:
        return None
    compressed = magic.startswith(GZIP_MAGIC)
    with _csv_errors(str(path)), _open_text(path, compressed) as text:
        dialect, header, _ = _csv_header(text, str(path))
    form, columns = names.locate(header, str(path))
    literal = dialect.quotechar == '"' and not dialect.skipinitialspace
    literal = literal and dialect.escapechar is None
    return CsvShape(
        str(path), form, columns, len(header), str(dialect.delimiter), compressed, literal
    )


def _csv_header(
    text: IO[str], source: str
) -> tuple[type[csv.Dialect] | csv.Dialect, list[str], CsvReader]:
    """The dialect, the header and a reader positioned on the first row after it."""
    dialect = _sniff(text.read(SNIFF_BYTES), source)
    text.seek(0)
    reader = csv.reader(text, dialect)
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise InputFileError(source, "empty file: no header line")
    return dialect, header, reader


@contextlib.contextmanager
def _csv_errors(source: str) -> Iterator[None]:
    """Reading errors as InputFileError naming the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise InputFileError(source, f"not UTF-8 text (byte {exc.start} of a block)") from exc
    except (gzip.BadGzipFile, EOFError) as exc:
        raise InputFileError(source, f"corrupt gzip data ({exc})") from exc
    except csv.Error as exc:
        raise InputFileError(source, f"not parseable as CSV ({exc})") from exc
    except OSError as exc:
        raise InputFileError(source, f"cannot read ({exc.strerror or exc})") from exc


def _read_csv(path: Path, names: ColumnNames, *, compressed: bool) -> Iterator[SourceBatch]:
    source = str(path)
    with _csv_errors(source), _open_text(path, compressed) as text:
        dialect, header, reader = _csv_header(text, source)
        form, columns = names.locate(header, source)
        delimiter = str(dialect.delimiter)
        batches = _csv_batches(
            reader,
            line_num=lambda: reader.line_num,
            columns=columns,
            width=len(header),
            delimiter=delimiter,
        )
        position = _stored_position(text)
        for batch in batches:
            yield SourceBatch(source, form, batch, position())


class _BatchBuilder:
    """Collects rows column by column and emits Arrow batches of BATCH_ROWS."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.cols: dict[str, list[str | int | None]] = {f.name: [] for f in SCHEMA}

    def __len__(self) -> int:
        return len(self.cols["row_number"])

    def add(
        self, line: int, values: dict[str, str | None], problem: str | None, raw: str | None
    ) -> None:
        cols = self.cols
        cols["row_number"].append(line)
        for role in ROLES:
            cols[role].append(values.get(role))
        cols["problem"].append(problem)
        cols["raw"].append(raw)

    def emit(self) -> pa.RecordBatch:
        batch = pa.record_batch(
            [pa.array(self.cols[f.name], f.type) for f in SCHEMA], schema=SCHEMA
        )
        self.reset()
        return batch


def _csv_batches(
    reader: Iterator[list[str]],
    *,
    line_num: Callable[[], int],
    columns: dict[str, int],
    width: int,
    delimiter: str,
) -> Iterator[pa.RecordBatch]:
    builder = _BatchBuilder()
    previous_end = line_num()
    for row in reader:
        line, previous_end = previous_end + 1, line_num()  # a quoted newline spans lines
        problem = None
        if not any(field.strip() for field in row):
            problem = EMPTY_ROW
        elif len(row) < width:
            problem = TOO_FEW_FIELDS
        elif len(row) > width:
            problem = TOO_MANY_FIELDS
        values = {role: row[index] if index < len(row) else None for role, index in columns.items()}
        builder.add(line, values, problem, delimiter.join(row) if problem else None)
        if len(builder) >= BATCH_ROWS:
            yield builder.emit()
    if len(builder):
        yield builder.emit()
