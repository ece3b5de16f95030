"""Docs that run: every SQL and Python example in README.md and docs/*.md, run against the
catalog of real runs, and checked to return rows that mean what its text says.

The runs use the default configuration (configs/default.toml; outputs in a tmp dir, dispatch and
callbacks faster) on the whole sample list, in the order a team has them: a full run, a
`--sample` run, a `--limit` run and a second full run. Their ids are of the kinds
docs/operations.md recommends (`nightly-<date>`, `sample-<date>`), so sorting ids as text picks
the sample run, not the newest one: "newest" and "like with like" are put to the test. Between
the two full runs Sinch's answers changed (the first ran on another simulator seed) and the
second asks every target again (`--refresh`, as after the TTL), so `capability_changes` has rows;
the limited run met a Sinch refusing queries (5xx), so some targets are `REQUEST_FAILED`.

What is run, from fenced blocks:
- ```sql: as written, on a read-only connection to the catalog.
- ```python: as written, in a fresh namespace; the last line, when it is an expression, is kept
  as the example's value (as a notebook shows it). An example that needs pyspark (the `spark`
  session) is skipped, with the reason, when pyspark is not installed.
- ```python bucket (or ```sql bucket): skipped here, run against a bucket by
  tests/e2e/test_run_s3.py in an analyst's DuckDB 1.5.5 with httpfs.
- ```sh: a `duckdb` command line with a query is run through DuckDB's Python API (the same query
  on the same file, read-only when `-readonly` is given): the CLI is not installed here, and the
  API runs the same SQL engine. One that only opens the interactive shell is not a query and is
  skipped, saying so. Other shell lines (make, capaudit, export) read no warehouse: not examples.

The docs' paths (`data/warehouse.duckdb`, `data/lake`, `data/reports`, also under an absolute
prefix such as `/srv/capaudit/`) are replaced by the tmp ones in the code run, never in the docs.

Every example must return a row (SQL), or show or fetch one or make frames that are not empty
(Python), and must not read the job's working state (`state.duckdb`: no example needs an
unpublished table). On top, each gets the check of EXPECTATIONS that names it (its file and a
piece of its code): what its text says, checked against the catalog asked by run id.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import re
import shlex
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from tests.conftest import REPO
from tests.e2e.test_audit import capaudit

FIRST, SAMPLE, LIMITED, NEWEST = (
    "nightly-2026-12-04",
    "sample-2026-12-05",
    "limited-2026-12-05",
    "nightly-2026-12-06",
)
RUNS: tuple[tuple[str, tuple[str, ...], dict[str, str]], ...] = (
    (FIRST, (), {"CAPAUDIT_SIMULATOR__SEED": "2"}),
    (SAMPLE, ("--sample", "500"), {}),
    (
        LIMITED,
        ("--limit", "100", "--refresh"),
        {
            "CAPAUDIT_SIMULATOR__FAULT_5XX_RATE": "0.5",
            "CAPAUDIT_DISPATCH__MAX_ATTEMPTS": "2",
            "CAPAUDIT_DISPATCH__BACKOFF_BASE_SECONDS": "0.05",
        },
    ),
    (NEWEST, ("--refresh",), {}),
)
FASTER = {
    "CAPAUDIT_DISPATCH__RATE_PER_SECOND": "400",
    "CAPAUDIT_SIMULATOR__WEBHOOK_RATE": "2000",
    "CAPAUDIT_SIMULATOR__CALLBACK_DELAY_MS": "50",
}
REACHABLE = ("CAPABILITY_FULL", "CAPABILITY_PARTIAL")
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
# A fenced block, also indented in a list item (its code is dedented).
FENCE = re.compile(r"^ *```(\w*)[^\n]*\n(.*?)^ *```[ \t]*$", re.MULTILINE | re.DOTALL)
# A path of the docs' layout, relative (data/lake) or under an install dir (/srv/capaudit/data/lake).
DOC_PATH = re.compile(r"(?<![\w./-])(?:/[\w.-]+)*/?data/(?=lake\b|reports\b|warehouse\.duckdb\b)")


@dataclass(frozen=True)
class Example:
    doc: str  # path relative to the repository
    line: int
    lang: str  # "sql" or "python"
    code: str
    read_only: bool = True
    skip: str = ""  # why it is not run

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def names(self, snippet: str) -> bool:
        return " ".join(snippet.split()) in " ".join(self.code.split())


# A fence whose info string says `bucket` reads a lake in S3 with an analyst's DuckDB 1.5.5 and
# httpfs (DuckDB 2.0 here cannot load httpfs): tests/e2e/test_run_s3.py runs it there.
BUCKET_MARK = "bucket"
BUCKET_SKIP = "reads s3:// with DuckDB 1.5.5 + httpfs: run by tests/e2e/test_run_s3.py"


def examples() -> Iterator[Example]:
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        doc = str(path.relative_to(REPO))
        for block in FENCE.finditer(text):
            lang, code = block.group(1), textwrap.dedent(block.group(2))
            line = text.count("\n", 0, block.start()) + 1
            if lang in ("sql", "python", "py"):
                skip = BUCKET_SKIP if BUCKET_MARK in block.group(0).split("\n", 1)[0] else ""
                yield Example(doc, line, "sql" if lang == "sql" else "python", code, skip=skip)
            elif lang in ("sh", "bash", "shell", "console"):
                yield from duckdb_commands(doc, line, code)


def duckdb_commands(doc: str, line: int, code: str) -> Iterator[Example]:
    """The `duckdb` command lines of a shell block, as SQL examples (see the module docstring)."""
    for offset, command in enumerate(code.splitlines()):
        words = shlex.split(command, comments=True)
        if not words or words[0] != "duckdb":
            continue
        positional = [word for word in words[1:] if not word.startswith("-")]
        sql = positional[1] if len(positional) > 1 else ""
        skip = "" if sql else "opens DuckDB's interactive shell: not a query"
        yield Example(doc, line + 1 + offset, "sql", sql, "-readonly" in words, skip)


EXAMPLES = list(examples())


# -- running an example ------------------------------------------------------------------------


@dataclass
class Outcome:
    """What an example gave: a query's columns and rows, or a Python example's namespace, the
    value of its last line and what it printed."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    names: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    printed: str = ""

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def frames(self) -> list[pl.DataFrame]:
        found = [*self.names.values(), self.value]
        return [value for value in found if isinstance(value, pl.DataFrame)]

    def fetched(self) -> list[Any]:
        """Rows fetched into names (`row = ....fetchone()`, `rows = ....fetchall()`), and the
        value of the last line when it is not a frame."""
        found = [value for value in self.names.values() if isinstance(value, tuple | list)]
        last = [] if self.value is None or isinstance(self.value, pl.DataFrame) else [self.value]
        return found + last


def localise(code: str, home: Path) -> str:
    return DOC_PATH.sub(lambda _: f"{home}/", code)


def run_sql(example: Example, home: Path) -> Outcome:
    database = str(home / "warehouse.duckdb")
    with duckdb.connect(database, read_only=example.read_only) as conn:
        cursor = conn.execute(localise(example.code, home))
        columns = [column[0] for column in cursor.description or []]
        return Outcome(columns=columns, rows=cursor.fetchall())


def run_python(example: Example, home: Path) -> Outcome:
    tree = ast.parse(localise(example.code, home), filename=example.id)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    names: dict[str, Any] = {"__name__": "__doc_example__", **spark_session(example)}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(tree, example.id, "exec"), names)
        value = None
        if last is not None:
            value = eval(compile(ast.Expression(last.value), example.id, "eval"), names)
    return Outcome(names=names, value=value, printed=printed.getvalue())


def spark_session(example: Example) -> dict[str, Any]:
    """`spark`, for an example written for a Spark shell (which defines it); skip without pyspark."""
    if not re.search(r"\bspark\.", example.code):
        return {}
    if importlib.util.find_spec("pyspark") is None:
        reason = f"{example.id} needs pyspark (a Spark session), which is not installed"
        print(reason)
        pytest.skip(reason)
    from pyspark.sql import SparkSession

    return {"spark": SparkSession.builder.master("local[1]").getOrCreate()}


# -- what each example means --------------------------------------------------------------------


class Truth:
    """The catalog asked directly, by run id, to check what an example returned."""

    def __init__(self, home: Path) -> None:
        self.catalog = str(home / "warehouse.duckdb")

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with duckdb.connect(self.catalog, read_only=True) as conn:
            return conn.execute(sql, list(params)).fetchall()

    def value(self, sql: str, *params: object) -> Any:
        return self.rows(sql, *params)[0][0]


Check = Callable[[Outcome, Truth], None]


def newest_full(truth_sql: str) -> Check:
    """The example's rows are exactly `truth_sql`'s for the newest full run (given as ?), in
    any order (the examples order rows for reading, and ties any way)."""

    def check(outcome: Outcome, truth: Truth) -> None:
        expected = truth.rows(truth_sql, NEWEST)
        assert expected
        assert sorted(outcome.rows, key=repr) == sorted(expected, key=repr), (
            "not the newest full run's rows"
        )

    return check


def first_run_shown(outcome: Outcome, truth: Truth) -> None:
    """A relation shown with the newest run first shows the newest full run first."""
    shown = [run for run in (FIRST, SAMPLE, LIMITED, NEWEST) if run in outcome.printed]
    assert shown, "no run shown"
    first = min(shown, key=outcome.printed.index)
    assert first == NEWEST, f"shows {first} first, not the newest full run {NEWEST}"
    if "newest" in outcome.names:
        assert outcome.names["newest"] == NEWEST


def readme_duckdb(outcome: Outcome, truth: Truth) -> None:
    assert "CAPABILITY_FULL" in outcome.printed
    assert outcome.names["newest"] == NEWEST  # a value fetched (DuckDB 2.0: execute().fetchone())


def latest_whatsapp(*, reachable: bool) -> Check:
    """A frame of the latest answers on WhatsApp (reachable ones only, or all)."""
    statuses = REACHABLE if reachable else (*REACHABLE, "NO_CAPABILITY", "CAPABILITY_UNKNOWN")

    def check(outcome: Outcome, truth: Truth) -> None:
        frame = outcome.value if outcome.value is not None else outcome.names.get("whatsapp")
        assert isinstance(frame, pl.DataFrame)
        expected = truth.value(
            "SELECT count(*) FROM capability_latest WHERE channel = 'WHATSAPP' "
            f"AND status IN {statuses}"
        )
        assert frame.height == expected > 0
        assert set(frame["channel"]) == {"WHATSAPP"}
        assert set(frame["status"]) <= set(statuses)

    return check


def polars_trend(outcome: Outcome, truth: Truth) -> None:
    latest_whatsapp(reachable=False)(outcome, truth)
    trend = outcome.names["trend"]
    assert isinstance(trend, pl.DataFrame)
    full = truth.rows("SELECT started_at FROM runs WHERE kind = 'full'")
    assert set(trend["started_at"]) == {started for (started,) in full}, "not only full runs"
    assert trend.height == 3 * len(full)


def runs_newest_first(outcome: Outcome, truth: Truth) -> None:
    runs = [run_id for (run_id,) in truth.rows("SELECT run_id FROM runs ORDER BY started_at DESC")]
    assert [row["run_id"] for row in outcome.records()] == runs
    assert all(row["matched_by"] for row in outcome.records())


def swedish_reachable(outcome: Outcome, truth: Truth) -> None:
    rows = outcome.records()
    assert rows
    assert all(row["identity"].startswith("46") and row["status"] in REACHABLE for row in rows)
    assert len(rows) == truth.value(
        "SELECT count(*) FROM capability_latest WHERE channel = 'WHATSAPP' "
        f"AND status IN {REACHABLE} AND identity LIKE '46%'"
    )


def lost_rcs(outcome: Outcome, truth: Truth) -> None:
    rows = outcome.records()
    assert rows, "the full run after the answers changed has contacts that lost RCS"
    assert all(r["previous_status"] in REACHABLE and r["new_status"] not in REACHABLE for r in rows)
    assert len(rows) == truth.value(
        "SELECT count(*) FROM capability_changes WHERE channel = 'RCS' AND change = 'lost'"
    )


def full_runs_only(truth_sql: str) -> Check:
    """A trend over runs: the full runs' rows only (like with like), in any order."""

    def check(outcome: Outcome, truth: Truth) -> None:
        expected = truth.rows(truth_sql)
        assert len({r[0] for r in truth.rows("SELECT run_id FROM runs WHERE kind = 'full'")}) == 2
        assert sorted(outcome.rows, key=repr) == sorted(expected, key=repr), "not full runs only"

    return check


def rcs_first(outcome: Outcome, truth: Truth) -> None:
    rows = outcome.records()
    assert rows, "a full run of the sample list has countries where RCS reaches most"
    assert all(r["contacts"] >= 100 and r["rcs_pct"] > r["whatsapp_pct"] for r in rows)
    country_targets = truth.rows(
        "SELECT country, targets FROM reachability_by_country WHERE run_id = ? AND channel = 'RCS'",
        NEWEST,
    )
    assert {(r["country"], r["contacts"]) for r in rows} <= set(country_targets)


def first_channel_per_country(outcome: Outcome, truth: Truth) -> None:
    contacts = truth.value("SELECT count(*) FROM channel_order WHERE run_id = ?", NEWEST)
    assert sum(r["contacts"] for r in outcome.records()) == contacts > 0


def failed_targets(outcome: Outcome, truth: Truth) -> None:
    assert outcome.rows, "the limited run met a Sinch refusing queries"
    assert all(row[1] for row in outcome.rows), "a failed target without its error"
    expected = truth.value("SELECT count(*) FROM capability WHERE status = 'REQUEST_FAILED'")
    assert sum(row[2] for row in outcome.rows) == expected


def rejects_of_a_run(outcome: Outcome, truth: Truth) -> None:
    expected = truth.value("SELECT count(*) FROM rejects WHERE run_id = ?", NEWEST)
    assert sum(row[1] for row in outcome.rows) == expected > 0


# (doc, a piece of the example's code, its check): each names exactly one example.
EXPECTATIONS: list[tuple[str, str, Check]] = [
    (
        "README.md",
        "targets, reachable_share FROM reachability",
        newest_full(
            "SELECT channel, targets, reachable_share FROM reachability "
            "WHERE run_id = ? ORDER BY channel"
        ),
    ),
    ("README.md", "FROM capability_latest WHERE channel = 'WHATSAPP'", readme_duckdb),
    ("README.md", 'scan("capability_latest"', latest_whatsapp(reachable=False)),
    (
        "docs/warehouse.md",
        "targets, round(100 * reachable_share, 1) AS pct FROM reachability WHERE",
        newest_full(
            "SELECT channel, targets, round(100 * reachable_share, 1) FROM reachability "
            "WHERE run_id = ? ORDER BY channel"
        ),
    ),
    ("docs/warehouse.md", "import duckdb", first_run_shown),
    ("docs/warehouse.md", 'trend = (scan("reachability"', polars_trend),
    ("docs/warehouse.md", "counts->'collect'", runs_newest_first),
    ("docs/warehouse.md", "identity LIKE '46%'", swedish_reachable),
    ("docs/warehouse.md", "c.change = 'lost'", lost_rcs),
    (
        "docs/warehouse.md",
        "round(100 * x.reachable_share, 1) AS pct FROM reachability x",
        full_runs_only(
            "SELECT r.started_at::DATE, x.channel, x.targets, round(100 * x.reachable_share, 1) "
            "FROM reachability x JOIN runs r USING (run_id) WHERE r.kind = 'full'"
        ),
    ),
    (
        "docs/warehouse.md",
        "round(100 * share_of_channel, 1) AS pct",
        newest_full(
            "SELECT status, reason_code, targets, round(100 * share_of_channel, 1) FROM reasons "
            "WHERE channel = 'RCS' AND run_id = ? ORDER BY targets DESC, status, reason_code"
        ),
    ),
    (
        "docs/warehouse.md",
        "SELECT contact_key, first_choice, channels FROM channel_order",
        newest_full(
            "SELECT contact_key, first_choice, channels FROM channel_order WHERE run_id = ? "
            "ORDER BY contact_key"
        ),
    ),
    ("docs/warehouse.md", "FILTER (WHERE channel = 'RCS') AS rcs", rcs_first),
    (
        "docs/warehouse.md",
        "coalesce(x.first_channel, 'unreachable') AS first_channel",
        full_runs_only(
            "SELECT r.started_at::DATE, coalesce(x.first_channel, 'unreachable'), x.contacts, "
            "round(100 * x.share, 1) FROM routing x JOIN runs r USING (run_id) "
            "WHERE r.kind = 'full'"
        ),
    ),
    ("docs/warehouse.md", "any_value(country) AS country", first_channel_per_country),
    ("docs/warehouse.md", "WHERE status = 'REQUEST_FAILED'", failed_targets),
    (
        "docs/warehouse.md",
        '.is_in(["CAPABILITY_FULL", "CAPABILITY_PARTIAL"])',
        latest_whatsapp(reachable=True),
    ),
    ("docs/contacts.md", "FROM rejects", rejects_of_a_run),
]


def expectation(example: Example) -> Check | None:
    found = [
        check
        for doc, snippet, check in EXPECTATIONS
        if doc == example.doc and example.names(snippet)
    ]
    assert len(found) <= 1, f"{example.id}: named by {len(found)} expectations"
    return found[0] if found else None


def returns_something(outcome: Outcome, truth: Truth) -> None:
    """What every example must do at least: return a row; or show one, fetch one, or make frames
    that are not empty."""
    if outcome.columns:
        assert outcome.rows, "returned no row"
        return
    frames, fetched = outcome.frames(), outcome.fetched()
    assert frames or fetched or outcome.printed, "made no frame, fetched and printed nothing"
    assert all(frame.height > 0 for frame in frames), "an empty frame"
    assert all(fetched), "fetched no row"


# -- the runs and the tests ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four runs of the module docstring, published to the catalog in this directory."""
    home = tmp_path_factory.mktemp("docs")
    paths = {
        "CAPAUDIT_WAREHOUSE__PATH": str(home / "warehouse.duckdb"),
        "CAPAUDIT_RECEIVER__LANDING_DIR": str(home / "landing"),
        "CAPAUDIT_REPORTS__DIR": str(home / "reports"),
    }
    for run_id, options, env in RUNS:
        done = capaudit("run", "--run-id", run_id, *options, env={**paths, **FASTER, **env})
        assert done.returncode == 0, done.stderr[-4000:]
    return home


def test_the_runs_tell_newest_from_the_largest_id(home: Path) -> None:
    truth = Truth(home)
    newest = truth.rows("SELECT newest_run_id, newest_full_run_id FROM capaudit_catalog")
    assert newest == [(NEWEST, NEWEST)]
    assert truth.value("SELECT max(run_id) FROM runs") == SAMPLE  # what sorting text picks
    kinds = truth.rows("SELECT run_id, kind FROM runs ORDER BY started_at")
    assert kinds == [(FIRST, "full"), (SAMPLE, "sample"), (LIMITED, "limited"), (NEWEST, "full")]


def test_every_expectation_names_one_example() -> None:
    for doc, snippet, _ in EXPECTATIONS:
        named = [
            example.id
            for example in EXAMPLES
            if example.doc == doc and example.names(snippet) and example.skip != BUCKET_SKIP
        ]
        assert len(named) == 1, f"{doc} {snippet!r}: names {named or 'no example'}"


@pytest.mark.parametrize(
    "example",
    [
        pytest.param(
            example,
            id=example.id,
            marks=[pytest.mark.skip(reason=example.skip)] if example.skip else [],
        )
        for example in EXAMPLES
    ],
)
def test_example_runs_and_means_what_it_says(
    example: Example, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Analysts read the catalog and the lake; the job's working state is not theirs (issue 26:
    # no example needs an unpublished table).
    assert "state.duckdb" not in example.code, "reads the job's working state"
    monkeypatch.chdir(home)  # a path left unreplaced finds nothing, not the repository's data/
    outcome = run_sql(example, home) if example.lang == "sql" else run_python(example, home)
    truth = Truth(home)
    returns_something(outcome, truth)
    check = expectation(example)
    if check is not None:
        check(outcome, truth)
