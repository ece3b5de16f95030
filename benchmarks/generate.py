"""Synthetic contact lists: the committed samples and the large benchmark inputs.

Numbers are real-shaped mobile numbers of several countries (built from libphonenumber's
example numbers, so they validate), written in the mixed notations real lists have.

    python -m benchmarks.generate sample      # rewrites data/sample/*
    python -m benchmarks.generate wide 10000000 /tmp/contacts.csv
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq

REGIONS = ("SE", "DE", "GB", "FR", "ES", "IT", "NL", "US", "BR", "IN", "MX", "PL")


def mobile_prefixes() -> dict[str, tuple[str, str]]:
    """region -> (country code, national significant number of an example mobile)."""
    found = {}
    for region in REGIONS:
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        found[region] = (
            str(example.country_code),
            phonenumbers.national_significant_number(example),
        )
    return found


def random_mobile(rng: random.Random, region: str, prefixes: dict[str, tuple[str, str]]) -> str:
    """A valid mobile number of `region` as E.164 digits (keeps the example's leading digits)."""
    code, example = prefixes[region]
    keep = max(3, len(example) - 6)
    while True:
        national = example[:keep] + "".join(rng.choice("0123456789") for _ in example[keep:])
        number = phonenumbers.parse("+" + code + national)
        if phonenumbers.is_valid_number(number):
            return code + national


def notation(rng: random.Random, digits: str) -> str:
    """The same number as people write it: +46 70..., 0046..., dashes, spaces."""
    number = phonenumbers.parse("+" + digits)
    style = rng.random()
    if style < 0.35:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if style < 0.6:
        return "+" + digits
    if style < 0.8:
        return "00" + digits
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return international.replace(" ", "-")


INVALID = ["12345", "+46 70 12", "not a number", "+999 123 456 789", "0046 99 000", "++4670"]


def write_sample(directory: Path, contacts: int = 2000, seed: int = 7) -> None:
    rng = random.Random(seed)
    prefixes = mobile_prefixes()
    rows = []
    for index in range(contacts):
        region = rng.choice(REGIONS)
        digits = random_mobile(rng, region, prefixes)
        contact_id = f"CUST-{index:05d}" if rng.random() < 0.4 else ""
        rows.append([contact_id, notation(rng, digits)])
    for index, bad in enumerate(INVALID):
        rows.insert(50 + index * 300, ["", bad])
    rows.insert(700, ["CUST-ONLY-ID-1", ""])  # queried by contact id
    rows.insert(900, rows[10][:])  # a duplicate
    rows.insert(1200, ["", ""])  # an empty row
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "contacts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["contact_id", "phone"])
        writer.writerows(rows)
    write_long_sample(directory / "contacts_long.parquet", rng, prefixes)


def write_long_sample(path: Path, rng: random.Random, prefixes: dict[str, tuple[str, str]]) -> None:
    records = []
    for index in range(60):
        contact_id = f"LONG-{index:04d}"
        digits = random_mobile(rng, rng.choice(REGIONS), prefixes)
        for channel in ("WHATSAPP", "SMS", "VIBERBM"):
            records.append((contact_id, channel, notation(rng, digits)))
        if index % 3 == 0:
            records.append((contact_id, "MESSENGER", f"{rng.randrange(10**15, 10**16)}"))
    records.append(("LONG-BAD", "CARRIER_PIGEON", "coop-7"))
    columns = list(zip(*records, strict=True))
    table = pa.table({"contact_id": columns[0], "channel": columns[1], "identity": columns[2]})
    pq.write_table(table, path)


def write_wide(path: Path, rows: int, seed: int = 11) -> None:
    """A large wide CSV: one phone per row, mixed notations, about 0.5% invalid."""
    rng = random.Random(seed)
    prefixes = mobile_prefixes()
    pool = [random_mobile(rng, rng.choice(REGIONS), prefixes)[:-5] for _ in range(5000)]
    with path.open("w", encoding="utf-8") as handle:
        handle.write("contact_id,phone\n")
        lines = []
        for index in range(rows):
            head = pool[index % len(pool)]
            digits = head + f"{rng.randrange(100000):05d}"
            style = index % 4
            phone = (
                "+" + digits
                if style == 0
                else "00" + digits
                if style == 1
                else "+" + digits[:2] + " " + digits[2:5] + " " + digits[5:]
                if style == 2
                else "+" + digits[:2] + "-" + digits[2:]
            )
            if index % 200 == 0:
                phone = "12345"
            lines.append(f"C{index},{phone}\n")
            if len(lines) >= 100_000:
                handle.writelines(lines)
                lines = []
        handle.writelines(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sample"]:
        write_sample(Path("data/sample"))
    elif sys.argv[1:2] == ["wide"]:
        write_wide(Path(sys.argv[3]), int(sys.argv[2]))
    else:
        sys.exit("usage: python -m benchmarks.generate sample | wide ROWS PATH")
