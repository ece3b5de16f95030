"""Asking again, on `run --resume`, for targets whose answer can no longer come.

Whether an accepted query's callback may still come depends on who owes it:

- **Sinch** (any real API) keeps the callbacks it owes and retries their delivery, so a resume
  waits for them as any collect does. Only a run that waited out a whole deadline
  (`runs.collect_gave_up`) asks its unanswered targets once more (`sql/asks/unanswered.sql`,
  a first ask only: never twice).
- **The embedded simulator** lives as long as the session that started it: the callbacks it
  still owed died with it (a SIGTERM mid-submit, a crash), and a resume starts a new one. So
  every target without an answer whose latest ask an earlier session accepted is asked again
  at once (`sql/asks/lost.sql`), or the resume would wait a whole deadline for nothing and end
  incomplete, and only a second resume would finish the run. (A transient answer whose
  re-query was lost stands: it is asked again once at most.)

Either way what landed meanwhile is ingested first: an answer that came is never asked again.

    planned = plan_resume_asks(conn, run_id, live, embedded=settings.sinch.embedded)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from importlib import resources

import duckdb

from pipeline import runs
from pipeline.landing.ingest import ingest_landing
from pipeline.landing.place import configured_landing
from pipeline.ledger import insert_requests
from pipeline.logs import log_fields
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def asks_sql(name: str) -> str:
    """The query of `sql/asks/<name>.sql`: targets to ask, with the columns of FIRST_ASKS."""
    return (resources.files("pipeline") / "sql" / "asks" / f"{name}.sql").read_text("utf-8")


def plan_resume_asks(
    conn: duckdb.DuckDBPyConnection, run_id: str, settings: Settings, *, embedded: bool
) -> int:
    """Before a resumed run sends anything: plan one more ask for each target whose answer can
    no longer come (see the module); `settings` are the live session's. Returns how many
    requests were planned (submit sends them)."""
    if not embedded and not runs.collect_gave_up(conn, run_id):
        return 0  # Sinch still owes those answers: they may come
    ingest_landing(conn, configured_landing(settings))
    name = "lost" if embedded else "unanswered"
    now = datetime.now(UTC)  # this session has sent nothing yet: earlier acceptances are lost
    planned = insert_requests(conn, asks_sql(name), run_id, settings.sinch.app_id, now)
    if planned:
        why = "the embedded simulator that owed them is gone" if embedded else "deadline passed"
        log_fields(
            log, "asking again for targets still without an answer", requests=planned, why=why
        )
    return planned
