"""The vectorised phone path agrees with phonenumbers.is_valid_number on every sample."""

from __future__ import annotations

import random

import duckdb
import phonenumbers
import pytest

from pipeline.contacts.phones import normalise_phones, parse_one


def samples() -> list[str]:
    rng = random.Random(5)
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            international = phonenumbers.format_number(
                example, phonenumbers.PhoneNumberFormat.INTERNATIONAL
            )
            found += [
                e164,
                international,
                "00" + e164[1:],
                e164 + "1",
                e164[:-1] + str(rng.randrange(10)),
            ]
    return [*found, "070-123 45 67", "+46 (0)70 123 45 67", "12", "abc", "+999 1234567", ""]


@pytest.mark.parametrize("region", ["", "SE", "US", "GB"])
def test_fast_path_matches_phonenumbers(region: str) -> None:
    conn = duckdb.connect()
    values = sorted(set(samples()))
    conn.execute("CREATE TEMP TABLE phones AS SELECT unnest($v) AS raw", {"v": values})
    table = normalise_phones(conn, "phones", region)
    got = dict(conn.execute(f"SELECT raw, e164 FROM {table}").fetchall())
    expected = {raw: parse_one(raw, region)[0] for raw in values}
    assert got == expected


def test_countries_match_region_code_for_number() -> None:
    """Every example number of every region and type (and the non-geographic codes), including
    the shared codes (+1, +7, +44, ...) where the region depends on the number itself."""
    numbers = [
        example
        for region in sorted(phonenumbers.SUPPORTED_REGIONS)
        for kind in range(12)  # every PhoneNumberType
        if (example := phonenumbers.example_number_for_type(region, kind)) is not None
    ]
    numbers += [
        example
        for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)
        if (example := phonenumbers.example_number_for_non_geo_entity(code)) is not None
    ]
    raws = sorted(
        {phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in numbers}
    )
    conn = duckdb.connect()
    conn.execute("CREATE TEMP TABLE phones AS SELECT unnest($v) AS raw", {"v": [*raws, "abc"]})
    table = normalise_phones(conn, "phones", "")
    got = dict(conn.execute(f"SELECT raw, country FROM {table}").fetchall())
    expected = {
        raw: phonenumbers.region_code_for_number(phonenumbers.parse(raw)) for raw in raws
    } | {"abc": None}
    assert len(raws) > 900
    assert {"US", "CA", "JM", "RU", "KZ", "GB", "JE", "001"} <= set(expected.values())
    assert got == expected
