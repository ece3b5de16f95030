"""Phone numbers to E.164 digits, country-aware.

Two paths, one set of rules (Google's libphonenumber metadata, via the `phonenumbers` package):

- the fast path is SQL over a whole table of numbers at once (`fast_path_sql`): strip
  separators, read an international prefix (`+` or `00`) or, with a default region, a national
  number (dropping the trunk prefix), split the country calling code and match the national
  number against every number-type pattern of that country's regions, exactly what
  `is_valid_number` checks;
- every number the fast path cannot decide (letters, extensions, `(0)` trunk digits inside an
  international number, regions with unusual trunk rules, or a number the patterns refuse) goes
  through `phonenumbers.parse` itself, once per distinct string, which then has the last word.

    normalise_phones(conn, "distinct_phones", default_region="SE")
    # adds columns e164 (digits, no '+'), reason (a reject reason code, or NULL) and country
    # (the number's region code, as phonenumbers.region_code_for_number gives it)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import duckdb
import phonenumbers
import pyarrow as pa
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from pipeline.db import sql_literal

INVALID_PHONE = "invalid_phone"
PHONE_WITHOUT_COUNTRY = "phone_without_country"
NUMBER_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)
SEPARATORS = r"[\s\-\.\(\)/\x{00A0}]"
SLOW_BATCH = 50_000
CODE_SAMPLE = 100_000  # numbers whose country codes order the validity CASE


@functools.cache
def country_patterns() -> dict[str, str]:
    """Country calling code -> one regex a valid national number matches in full."""
    patterns: dict[str, str] = {}
    for code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        parts: list[str] = []
        for region in regions:
            metadata = (
                PhoneMetadata.metadata_for_nongeo_region(code)
                if region == "001"
                else PhoneMetadata.metadata_for_region(region)
            )
            if metadata is None:
                continue
            for number_type in NUMBER_TYPES:
                desc = getattr(metadata, number_type)
                if desc is not None and desc.national_number_pattern:
                    parts.append(desc.national_number_pattern)
        if parts:
            patterns[str(code)] = "|".join(f"(?:{p})" for p in dict.fromkeys(parts))
    return patterns


def trunk_rule(region: str) -> tuple[str, str] | None:
    """(country code, trunk prefix) when the region's national numbers can be read simply."""
    metadata = PhoneMetadata.metadata_for_region(region.upper())
    if metadata is None:
        return None
    prefix = metadata.national_prefix or ""
    parsing = metadata.national_prefix_for_parsing
    simple = metadata.national_prefix_transform_rule is None and parsing in (None, prefix)
    if not simple or (prefix and not prefix.isdigit()):
        return None
    return str(metadata.country_code), prefix


def _region_case(number: str, code: str, codes: Sequence[str] | None = None) -> str:
    """A CASE giving the region of `number` (a national number of the calling code in `code`)
    when it matches that code's patterns, else NULL: validity and country in one pass.

    `codes` (default: every code) limits and orders the branches: DuckDB tries them in turn,
    so a CASE over the few codes a list holds, the commonest first, costs a fraction of one
    over all 215.
    """
    patterns = country_patterns()
    listed = sorted(patterns) if codes is None else [c for c in codes if c in patterns]
    whens = "\n".join(
        f"    WHEN {code} = {sql_literal(cc)} THEN CASE WHEN "
        f"regexp_full_match({number}, {sql_literal(patterns[cc])}) "
        f"THEN {_region_of_code(cc, number)} END"
        for cc in listed
    )
    return f"CASE\n{whens}\nEND" if listed else "NULL::VARCHAR"


def _region_of_code(code: str, national: str) -> str:
    """The region of a valid number of the country calling code `code`, the way
    libphonenumber's `region_code_for_number` picks it: a code shared by several regions
    (+1, +7, +44, ...) tries them in its metadata's order, by leading digits when the region
    has them, else by whether the national number is of any known type there."""
    regions = COUNTRY_CODE_TO_REGION_CODE[int(code)]
    if len(regions) == 1:
        return sql_literal(regions[0])
    whens = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            leading = sql_literal(f"^(?:{metadata.leading_digits})")
            test = f"regexp_matches({national}, {leading})"
        else:
            patterns = [
                desc.national_number_pattern
                for desc in (getattr(metadata, t) for t in NUMBER_TYPES)
                if desc is not None and desc.national_number_pattern
            ]
            alternatives = "|".join(f"(?:{p})" for p in dict.fromkeys(patterns))
            test = f"regexp_full_match({national}, {sql_literal(alternatives)})"
        whens.append(f"WHEN {test} THEN {sql_literal(region)}")
    return f"CASE {' '.join(whens)} ELSE {sql_literal(regions[0])} END"


def _calling_code(digits: str) -> str:
    """Country calling codes are prefix-free (ITU E.164): at most one of 1-3 digits matches."""
    codes = country_patterns()
    branches = []
    for length in (1, 2, 3):
        listed = ", ".join(sql_literal(c) for c in sorted(codes) if len(c) == length)
        prefix = f"substr({digits}, 1, {length})"
        branches.append(f"WHEN {prefix} IN ({listed}) THEN {prefix}")
    return "CASE " + " ".join(branches) + " END"


def split_sql(table: str, default_region: str) -> str:
    """SQL giving every row of `table` (any columns, one of them `raw`) its international
    `digits` (NULL when undecided) and their `calling_code` (NULL when none matches)."""
    rule = trunk_rule(default_region) if default_region else None
    national = "NULL"
    if rule is not None:
        code, prefix = rule
        strip = (
            f"CASE WHEN starts_with(cleaned, {sql_literal(prefix)}) "
            f"THEN substr(cleaned, {len(prefix) + 1}) ELSE cleaned END"
            if prefix
            else "cleaned"
        )
        national = f"{sql_literal(code)} || ({strip})"
    return f"""
    WITH cleaned AS (
        SELECT *, regexp_replace(raw, '{SEPARATORS}', '', 'g') AS cleaned FROM {table}
    ), international AS (
        SELECT * EXCLUDE (cleaned), CASE
            WHEN regexp_full_match(cleaned, '\\+[0-9]{{2,17}}') THEN substr(cleaned, 2)
            WHEN regexp_full_match(cleaned, '00[0-9]{{2,17}}') THEN substr(cleaned, 3)
            WHEN regexp_full_match(cleaned, '[0-9]{{2,17}}') THEN {national}
        END AS digits FROM cleaned
    )
    SELECT *, {_calling_code("digits")} AS calling_code FROM international
    """


def validity_sql(split: str, codes: Sequence[str] | None = None) -> str:
    """SQL adding `e164` (NULL when undecided) and its `country` (the region code, '001' for
    non-geographic numbers such as +800) to every row of `split` (see `split_sql`)."""
    region = _region_case("substr(digits, length(calling_code) + 1)", "calling_code", codes)
    return f"""
    WITH placed AS (
        SELECT *, CASE WHEN calling_code IS NOT NULL THEN {region} END AS country FROM {split}
    )
    SELECT * EXCLUDE (digits, calling_code, country),
        CASE WHEN country IS NOT NULL THEN digits END AS e164, country
    FROM placed
    """


def fast_path_sql(table: str, default_region: str, codes: Sequence[str] | None = None) -> str:
    """SQL adding `e164` (NULL when undecided) and `country` to every row of `table` (a column
    `raw`)."""
    return validity_sql(f"({split_sql(table, default_region)})", codes)


def country_codes(conn: duckdb.DuckDBPyConnection, table: str, default_region: str) -> list[str]:
    """Every country calling code, those of some of `table`'s numbers first, commonest first:
    the order in which the validity CASE tries them (rows leave it at their match)."""
    # Any rows will do (the order only speeds the CASE up): LIMIT stops reading early.
    sample = f"(SELECT raw FROM {table} LIMIT {CODE_SAMPLE})"
    sampled = conn.execute(
        f"SELECT calling_code FROM ({split_sql(sample, default_region)}) "
        f"WHERE calling_code IS NOT NULL GROUP BY ALL ORDER BY count(*) DESC, calling_code"
    ).fetchall()
    first = [str(code) for (code,) in sampled]
    return first + sorted(set(country_patterns()) - set(first))


def parse_one(raw: str, default_region: str) -> tuple[str | None, str | None]:
    """(E.164 digits, None) or (None, reason) via phonenumbers itself: the slow path."""
    e164, reason, _ = parse_number(raw, default_region)
    return e164, reason


def parse_number(raw: str, default_region: str) -> tuple[str | None, str | None, str | None]:
    """(E.164 digits, None, region) or (None, reason, None): `parse_one` with the country."""
    text = raw.strip()
    if re.match(r"^00[1-9]", re.sub(r"[\s\-.()/]", "", text)):
        text = "+" + re.sub(r"[\s\-.()/]", "", text)[2:]  # '00' is the common international prefix
    try:
        number = phonenumbers.parse(text, default_region.upper() or None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return None, PHONE_WITHOUT_COUNTRY if not default_region else INVALID_PHONE, None
        return None, INVALID_PHONE, None
    if not phonenumbers.is_valid_number(number):
        return None, INVALID_PHONE, None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    return e164, None, phonenumbers.region_code_for_number(number)


def normalise_phones(conn: duckdb.DuckDBPyConnection, table: str, default_region: str) -> str:
    """Map every distinct `raw` of `table` to (e164, reason, country); returns the result
    table's name."""
    result = f"{table}_normalised"
    codes = country_codes(conn, table, default_region)
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {result} AS SELECT raw, e164, NULL::VARCHAR AS reason, "
        f"country FROM ({fast_path_sql(f'(SELECT raw FROM {table})', default_region, codes)})"
    )
    reader = conn.sql(f"SELECT raw FROM {result} WHERE e164 IS NULL").to_arrow_reader(SLOW_BATCH)
    decided = [_parse_batch(batch.column(0).to_pylist(), default_region) for batch in reader]
    if decided:
        conn.register("decided_phones", pa.concat_tables(decided))
        conn.execute(
            f"UPDATE {result} SET e164 = d.e164, reason = d.reason, country = d.country "
            f"FROM decided_phones d WHERE {result}.raw = d.raw"
        )
        conn.unregister("decided_phones")
    return result


def _parse_batch(raws: list[str], default_region: str) -> pa.Table:
    answers = [parse_number(raw, default_region) for raw in raws]
    names = ("e164", "reason", "country")
    columns = {name: [a[i] for a in answers] for i, name in enumerate(names)}
    return pa.table(
        {"raw": raws, **columns},
        schema=pa.schema([("raw", pa.string()), *((name, pa.string()) for name in names)]),
    )
