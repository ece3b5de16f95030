"""The completeness gate: a run missing too many answers is not reported as a success.

Shares over all targets count a target without an answer as not reachable, so a run whose
receiver was down reports reachability that is wrong by whatever share went missing. When the
share of `NO_RESPONSE` among the run's queried targets exceeds `[collect]
max_no_response_share`, the run ends as *incomplete* (exit 3): its report says so, and
`capaudit run --resume` keeps collecting (and asks the still unanswered targets once more).

    gate = completeness(conn, run_id, max_share=0.02)
    gate.complete, gate.no_response, gate.queried
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from pipeline.settings import CollectSettings

DEFAULT_MAX_NO_RESPONSE_SHARE = CollectSettings.max_no_response_share


@dataclass(frozen=True)
class Completeness:
    run_id: str
    queried: int  # targets asked in this run (not reused from an earlier one)
    no_response: int
    max_share: float

    @property
    def share(self) -> float:
        return self.no_response / self.queried if self.queried else 0.0

    @property
    def complete(self) -> bool:
        return self.share <= self.max_share

    @property
    def resume_command(self) -> str:
        return f"capaudit run --resume --run-id {self.run_id}"

    def message(self) -> str:
        return (
            f"run {self.run_id} is incomplete: {self.no_response:,} of {self.queried:,} queried "
            f"targets ({self.share:.1%}) have no answer, more than [collect] "
            f"max_no_response_share {self.max_share:.1%} allows; continue with "
            f"{self.resume_command}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The `completeness` object of summary.json."""
        return {
            "status": "complete" if self.complete else "incomplete",
            "queried": self.queried,
            "no_response": self.no_response,
            "no_response_share": round(self.share, 6),
            "max_no_response_share": self.max_share,
            "resume": None if self.complete else self.resume_command,
        }


def completeness(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    max_share: float = DEFAULT_MAX_NO_RESPONSE_SHARE,
) -> Completeness:
    """The gate over the run's built `capability` rows."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE NOT reused), "
        "count(*) FILTER (WHERE status = 'NO_RESPONSE') "
        "FROM capability WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    queried, missing = (int(row[0]), int(row[1])) if row else (0, 0)
    return Completeness(run_id, queried, missing, max_share)
