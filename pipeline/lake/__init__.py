"""The analysts' lake: every finished run as hive-partitioned Parquet, and the catalog.

    data/lake/<table>/run_id=<id>/data_0.parquet     one partition per published run
    data/lake/capability_latest/as_of_run=<id>/...    the latest answers as of that run
    data/lake/_published.json                         what the current catalog lists
    data/warehouse.duckdb                             read-only views over the listed files

`tables` is the one list of what is published; `publish` writes a run and swaps in the catalog
(`catalog`), and with `[warehouse] lake_url` shows the same in a bucket (`bucket`); `migrate`
adopts a single-file warehouse; `scan` is the polars API (a directory or an s3:// lake).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.lake.scan import scan

__all__ = ["scan"]


def __getattr__(name: str) -> Any:
    """`scan` imports polars, which the run itself never needs: loaded when asked for."""
    if name == "scan":
        from pipeline.lake.scan import scan

        globals()["scan"] = scan  # over the submodule the import bound to the same name
        return scan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
