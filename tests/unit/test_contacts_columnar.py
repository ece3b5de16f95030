"""The DuckDB way in for plain CSV stages exactly the rows the csv-module way stages."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import pytest

from pipeline.contacts.columnar import stage_literal_csv
from pipeline.contacts.load import _duck_type
from pipeline.contacts.sources import SCHEMA, ColumnNames, csv_shape, read_file

NAMES = ColumnNames()


def staged_by_duckdb(path: Path) -> list[tuple[object, ...]] | None:
    conn = duckdb.connect()
    columns = ", ".join(f"{f.name} {_duck_type(f.type)}" for f in SCHEMA)
    conn.execute(f"CREATE TEMP TABLE staged (file_index INTEGER, {columns})")
    shape = csv_shape(path, NAMES)
    assert shape is not None
    if stage_literal_csv(conn, shape, 0) is None:
        return None
    return conn.execute("SELECT * EXCLUDE (file_index) FROM staged ORDER BY row_number").fetchall()


def staged_by_csv_module(path: Path) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for piece in read_file(path, NAMES):
        columns = [piece.batch.column(f.name).to_pylist() for f in SCHEMA]
        rows.extend(zip(*columns, strict=True))
    return rows


PLAIN = {
    "blank and whitespace lines": "contact_id,phone\nc1,+46701234567\n\n  \n\t,\xa0\n,\nc2,0701\n",
    "too few and too many": "contact_id,phone\nc1\nc2,+4670,x\nc3,,\n,,,\n",
    "trailing blank lines": "contact_id,phone\nc1,1\n\n\n",
    "no final newline": "contact_id,phone\nc1,1",
    "crlf and bom": "\ufeffcontact_id,phone\r\nc1, +46 70\r\n\r\nc2\r\n",
    "semicolon": "contact_id;phone\nc1;+46 70-123\nc2;1;2\n",
    "tab": "contact_id\tphone\nc1\t+46 70\n\t\nc2\n",
    "pipe": "phone|contact_id\n+4670|c1\n|\nx|y|z\n",
    "long form": "contact_id,channel,identity\nc1,SMS,+4670\nc2,MESSENGER,PSID 1\nc3,,\n",
    "header order and extra columns": "name,phone,contact_id,note\nAnn,+4670,c1,x\nBo,,,\n",
    "unicode": "contact_id,phone\nÅsa,+46 70\u2009123\n\u3000,\n",
    "single column": "phone\n+4670\n\n   \n",
    "comment-like and control characters": "contact_id,phone\n#c1,+4670\n# ,\n\x0c\nc2,+46\x0b70\n",
    "null-like text": "contact_id,phone\nc1,\\N\nNULL,null\n",
}


@pytest.mark.parametrize("text", PLAIN.values(), ids=PLAIN.keys())
def test_plain_files_stage_as_the_csv_module_reads_them(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8", newline="")
    assert staged_by_duckdb(path) == staged_by_csv_module(path)


def test_gzip_stages_the_same(tmp_path: Path) -> None:
    path = tmp_path / "c.csv.gz"
    path.write_bytes(gzip.compress(PLAIN["too few and too many"].encode()))
    assert staged_by_duckdb(path) == staged_by_csv_module(path)


NOT_PLAIN = {
    "quotes": 'contact_id,phone\n"c,1",+4670\n',
    "quoted newline": 'contact_id,phone\n"c\n1",+4670\n',
    "lone carriage return": "contact_id,phone\r\nc1,1\rc2,2\r\n",
    "mixed line ends": "contact_id,phone\nc1,1\r\nc2,2\n",
    "nul": "contact_id,phone\nc1,\x001\n",
}


@pytest.mark.parametrize("text", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_other_files_are_left_to_the_csv_module(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8", newline="")
    assert staged_by_duckdb(path) is None


def test_text_that_is_not_utf8_is_left_to_the_csv_module(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    # past the first 64 KiB, which the header sniffing reads (and would refuse itself)
    path.write_bytes(b"contact_id,phone\n" + b"c0,+46701234567\n" * 5000 + b"c1,+46\xff70\n")
    assert staged_by_duckdb(path) is None


def test_only_numbers_the_fast_path_leaves_reach_phonenumbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.contacts import phones
    from pipeline.contacts.load import load_contacts
    from pipeline.settings import ContactsSettings
    from pipeline.warehouse import open_warehouse

    parsed: list[str] = []
    parse_number = phones.parse_number

    def counting(raw: str, default_region: str) -> tuple[str | None, str | None, str | None]:
        parsed.append(raw)
        return parse_number(raw, default_region)

    monkeypatch.setattr(phones, "parse_number", counting)
    path = tmp_path / "c.csv"
    path.write_text("contact_id,phone\na,+46 70 123 45 67\nb,0049 1512 3456789\nc,call me\n")
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        summary = load_contacts(conn, "r", ContactsSettings(), [str(path)])
    assert parsed == ["call me"]
    assert summary.targets == 6
    assert summary.rejects_by_reason == {"invalid_phone": 1}
