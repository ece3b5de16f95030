"""The one exception tree of capaudit.

Every error a user can meet is one of these; foreign errors (httpx, duckdb, pyarrow, OSError)
are translated into them at the boundary where they happen. The CLI maps each branch to an
exit code (DESIGN §4) and prints the message, never a traceback.

    CapauditError                      base; carries `exit_code`
    ├── UsageError                     exit 2: the user must change something before retrying
    │   ├── ConfigError                bad or missing configuration key, missing secret
    │   ├── InputFileError             a contact file that cannot be read at all
    │   │   └── EmptyInput             ... or holds a header only (also a NothingToAsk)
    │   └── NothingToAsk               a run that can do nothing: no target, or a window that
    │                                  fits none (`runs.status` 'refused': not published, not
    │                                  resumed; DESIGN §7 rule 10)
    ├── RunFailed                      exit 1: the run could not complete
    │   ├── SinchApiError              an HTTP error answer from Sinch (status, code, message)
    │   ├── SinchTransportError        no answer at all (connect, timeout, dropped connection)
    │   ├── WarehouseError             the DuckDB warehouse cannot be opened or is inconsistent
    │   ├── RunLocked                  another run holds the warehouse lock
    │   ├── ServiceError               an embedded simulator or receiver did not start
    │   └── StorageError               object storage (S3) refused or did not answer
    │       └── StorageUnavailable     no answer, a timeout or a 5xx after the client's retries
    └── Interrupted                    exit 3: stopped by SIGTERM/SIGINT; `run --resume` continues
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 3


class CapauditError(Exception):
    """Base of every capaudit error; `exit_code` is what the CLI exits with, `run_status` what
    a run it ends records in `runs.status`."""

    exit_code: ClassVar[int] = EXIT_FAILED
    run_status: ClassVar[str] = "failed"


class UsageError(CapauditError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration key is missing, unknown or has a bad value; the message names it."""


class InputFileError(UsageError):
    """A contact file cannot be read at all."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class NothingToAsk(UsageError):
    """The run can ask nothing that was asked of it (DESIGN §7 rule 10): its input gave no
    target, or its window fits none of the targets that need asking. The message says why,
    with the numbers, and how to fix it."""

    run_status = "refused"


class EmptyInput(InputFileError, NothingToAsk):
    """The contact files hold no row at all: nothing to audit."""


class RunFailed(CapauditError):
    exit_code = EXIT_FAILED


class SinchApiError(RunFailed):
    """Sinch answered with an HTTP error; `body` is its error object (reference §2)."""

    def __init__(self, status: int, message: str, *, code: str = "", body: str = "") -> None:
        super().__init__(f"Sinch API error {status} {code}: {message}".replace("  ", " "))
        self.status = status
        self.code = code
        self.body = body


class SinchTransportError(RunFailed):
    """No HTTP answer: connect error, timeout or a connection dropped mid-request."""


class WarehouseError(RunFailed):
    pass


class RunLocked(RunFailed):
    pass


class ServiceError(RunFailed):
    pass


class Interrupted(CapauditError):
    exit_code = EXIT_INTERRUPTED
    run_status = "interrupted"


class StorageError(RunFailed):
    """Object storage answered with an error (access denied, no such bucket, ...)."""


class StorageUnavailable(StorageError):
    """Object storage did not answer usefully (connect error, timeout, 5xx) after retries: the
    receiver answers 503, a step fails and is resumed."""
