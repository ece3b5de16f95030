"""The published tables: one entry per table, with how one run's rows are selected.

This is the one list publication, the catalog and `pipeline.lake.scan` read. To publish a new
table, add an entry: by default a table's rows for a run are `WHERE run_id = $run_id`, written
without the `run_id` column (it lives in the partition path, as hive partitioning wants: Spark
refuses a column that is both in the files and in the path). A table missing from the state
database (an optional model not built by this version or this run) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

LATEST = "capability_latest"


@dataclass(frozen=True)
class LakeTable:
    name: str
    # SELECT of one run's rows from the state database, `$run_id` its parameter; None: the default.
    select: str | None = None
    partition: str = "run_id"  # the hive partition column: data/lake/<name>/<partition>=<run>/

    def select_sql(self) -> str:
        if self.select is not None:
            return self.select
        return f"SELECT * EXCLUDE (run_id) FROM {self.name} WHERE run_id = $run_id"


TABLES: tuple[LakeTable, ...] = (
    LakeTable("runs"),
    LakeTable(
        "targets",
        "SELECT * EXCLUDE (run_id) FROM targets_with_source WHERE run_id = $run_id",
    ),
    LakeTable("rejects"),
    # Not `requests`: the ledger is the job's working state (the sent bodies, attempts, HTTP
    # statuses); analysts read each target's outcome, request_id and error in `capability`.
    LakeTable(
        "notifications",
        # Notifications are not per run: a run publishes the callbacks for its own requests.
        "SELECT * FROM notifications WHERE request_id IN "
        "(SELECT request_id FROM requests WHERE run_id = $run_id)",
    ),
    LakeTable("capability"),
    LakeTable("reachability"),
    LakeTable("reasons"),
    LakeTable("capability_changes"),
    LakeTable("reachability_by_country"),
    LakeTable("routing"),
    LakeTable("estimates"),
    LakeTable("sample_frame"),
    LakeTable("sample_members"),
    LakeTable("late_answers"),
    # The latest answer per contact and channel as of the run: the previous snapshot merged with
    # the run's answers (see snapshot.py). Its rows keep the `run_id` each answer came from, so
    # the partition is named `as_of_run`.
    LakeTable(LATEST, select="", partition="as_of_run"),
)


def by_name(name: str) -> LakeTable:
    for table in TABLES:
        if table.name == name:
            return table
    known = ", ".join(t.name for t in TABLES)
    raise KeyError(f"no published table {name!r} (published: {known})")
