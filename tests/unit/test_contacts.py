"""Contact loading: every row becomes targets or exactly one reject with the right reason."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contacts.load import load_contacts
from pipeline.errors import InputFileError
from pipeline.settings import ContactsSettings
from pipeline.warehouse import open_warehouse


def load(tmp_path: Path, *files: Path, **settings: object) -> tuple[list[tuple], list[tuple]]:
    """(targets, rejects) after loading `files`; rows as tuples of the interesting columns."""
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        load_contacts(conn, "r", ContactsSettings(**settings), [str(f) for f in files])  # type: ignore[arg-type]
        targets = conn.execute(
            "SELECT contact_key, channel, identity, row_number FROM targets_with_source "
            "ORDER BY source, row_number, channel"
        ).fetchall()
        rejects = conn.execute(
            "SELECT row_number, reason FROM rejects ORDER BY source, row_number"
        ).fetchall()
    return targets, rejects


def write(path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_wide_rows_become_one_target_per_phone_channel(tmp_path: Path) -> None:
    csv = write(tmp_path / "c.csv", "contact_id,phone\nc1,+46 70 123 45 67\n,0049 1512 3456789\n")
    targets, rejects = load(tmp_path, csv)
    assert rejects == []
    assert targets == [
        ("c1", "RCS", "46701234567", 2),
        ("c1", "SMS", "46701234567", 2),
        ("c1", "WHATSAPP", "46701234567", 2),
        ("4915123456789", "RCS", "4915123456789", 3),
        ("4915123456789", "SMS", "4915123456789", 3),
        ("4915123456789", "WHATSAPP", "4915123456789", 3),
    ]


def test_each_reject_reason(tmp_path: Path) -> None:
    wide = write(
        tmp_path / "wide.csv",
        "contact_id,phone\n"
        "a,+46701234567\n"  # 2 ok
        ",\n"  # 3 empty_row
        "b\n"  # 4 too_few_fields
        "c,+46701234568,x\n"  # 5 too_many_fields
        "d,+46 70 12\n"  # 6 invalid_phone
        "e,070-123 45 69\n"  # 7 phone_without_country
        "a,+46701234567\n",  # 8 duplicate
    )
    long = write(
        tmp_path / "long.csv",
        "contact_id,channel,identity\n"
        "f,WHATSAPP,\n"  # 2 missing_identity
        "g,,+46701234570\n"  # 3 missing_channel
        "h,PIGEON,coo\n"  # 4 unknown_channel
        "i,messenger,has space\n"  # 5 invalid_identity
        "j,Messenger,PSID-1\n",  # 6 ok, channel case-insensitive
    )
    targets, rejects = load(tmp_path, wide, long)
    assert rejects == [
        (2, "missing_identity"),
        (3, "missing_channel"),
        (4, "unknown_channel"),
        (5, "invalid_identity"),
        (3, "empty_row"),
        (4, "too_few_fields"),
        (5, "too_many_fields"),
        (6, "invalid_phone"),
        (7, "phone_without_country"),
        (8, "duplicate"),
    ]
    assert {(t[0], t[1]) for t in targets} == {
        ("a", "RCS"),
        ("a", "SMS"),
        ("a", "WHATSAPP"),
        ("j", "MESSENGER"),
    }


def test_default_region_accepts_national_numbers(tmp_path: Path) -> None:
    csv = write(tmp_path / "c.csv", "phone\n070-123 45 67\n")
    targets, rejects = load(tmp_path, csv, default_region="SE", phone_channels=("SMS",))
    assert rejects == []
    assert targets == [("46701234567", "SMS", "46701234567", 2)]


def test_contact_id_only_rows_are_queried_by_contact_id(tmp_path: Path) -> None:
    csv = write(tmp_path / "c.csv", "contact_id,phone\nCUST-1,\n")
    targets, _ = load(tmp_path, csv, contact_id_channels=("WHATSAPP",))
    assert targets == [("CUST-1", "WHATSAPP", None, 2)]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_quirks_bom_crlf_quotes_delimiters(tmp_path: Path, delimiter: str) -> None:
    text = (
        f'\ufeffcontact_id{delimiter}phone\r\n"c{delimiter}1"{delimiter}"+46 70 123 45 67"\r\n'
        f"c2{delimiter}+4915123456789\r\n"
    )
    targets, rejects = load(tmp_path, write(tmp_path / "c.csv", text), phone_channels=("SMS",))
    assert rejects == []
    assert [t[0] for t in targets] == [f"c{delimiter}1", "c2"]


def test_gzip_and_parquet_long_form(tmp_path: Path) -> None:
    gz = tmp_path / "c.csv.gz"
    gz.write_bytes(gzip.compress(b"phone\n+46701234567\n"))
    parquet = tmp_path / "l.parquet"
    pq.write_table(pa.table({"channel": ["SMS"], "identity": ["+4915123456789"]}), parquet)
    targets, rejects = load(tmp_path, gz, parquet, phone_channels=("SMS",))
    assert rejects == []
    assert sorted((t[0], t[1]) for t in targets) == [
        ("46701234567", "SMS"),
        ("4915123456789", "SMS"),
    ]


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "latin1.csv", "phone\nJosé\n", encoding="latin-1")
    with pytest.raises(InputFileError, match=r"latin1\.csv: not UTF-8"):
        load(tmp_path, bad)
    nothing = write(tmp_path / "cols.csv", "name,email\nx,y\n")
    with pytest.raises(InputFileError, match=r"cols\.csv: no usable columns"):
        load(tmp_path, nothing)
    with pytest.raises(InputFileError, match=r"missing\.csv: file not found"):
        load(tmp_path, tmp_path / "missing.csv")


def test_each_target_keeps_its_country(tmp_path: Path) -> None:
    wide = write(
        tmp_path / "wide.csv",
        "contact_id,phone\na,+46 70 123 45 67\nb,+1 416 555 0123\nc,+1 212 555 0123\nd,\n",
    )
    long = write(
        tmp_path / "long.csv",
        "contact_id,channel,identity\ne,MESSENGER,4915123456789\nf,WHATSAPP,004915123456789\n",
    )
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        settings = ContactsSettings(phone_channels=("SMS",), contact_id_channels=("WHATSAPP",))
        load_contacts(conn, "r", settings, [str(wide), str(long)])
        countries = conn.execute(
            "SELECT contact_key, channel, country FROM targets ORDER BY 1"
        ).fetchall()
    assert countries == [
        ("a", "SMS", "SE"),
        ("b", "SMS", "CA"),  # +1: the region by area code
        ("c", "SMS", "US"),
        ("d", "WHATSAPP", "unknown"),  # asked by contact id
        ("e", "MESSENGER", "unknown"),  # an app-scoped identity, whatever it looks like
        ("f", "WHATSAPP", "DE"),
    ]
