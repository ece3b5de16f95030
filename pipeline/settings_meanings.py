"""What every setting means: the one place its meaning, unit and readers are written.

`pipeline/settings.py` defines the keys, their types and defaults; `pipeline/settings_doc.py`
renders both into docs/configuration.md (`make docs`). A key without an entry here is shown as
undocumented and fails tests/unit/test_configuration_doc.py, as does an entry for a key that
no longer exists. `read_by` left empty takes the section's commands.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyDoc:
    meaning: str
    unit: str = ""  # empty: the key's type (number, text, ...)
    read_by: str = ""  # commands, comma-separated; empty: the section's


@dataclass(frozen=True)
class SecretDoc:
    name: str
    meaning: str
    read_by: str


SINCH_CALLERS = "run, submit, collect, webhooks, check"
EMBEDDED = "simulate, run, webhooks, check"  # the last three with base_url = "embedded"
STATE = "run, load, plan, submit, collect, build, report, publish, purge"

# section -> (title, introduction, commands that read it)
SECTION_DOCS: dict[str, tuple[str, str, str]] = {
    "sinch": (
        "the Sinch API",
        "Where the Conversation API is and how capaudit authenticates to it. The access key "
        "itself is a secret (below).",
        SINCH_CALLERS,
    ),
    "dispatch": (
        "sending capability queries",
        "How fast and how hard queries are sent. Sinch caps a project at 800 queries/s and "
        "delivers 25 callbacks/s per app by default (one per channel asked), so with "
        "`pace_to_callbacks` the callback rate, not `rate_per_second`, sets the pace.",
        "run, submit, collect",
    ),
    "receiver": (
        "the webhook receiver",
        "`capaudit serve` (and the receiver an embedded run starts). `--host`, `--port`, "
        "`--landing-dir` and `--insecure` override the keys of the same name.",
        "serve, run",
    ),
    "contacts": (
        "contact lists",
        "Which files are read and how their rows become targets (details in "
        "[contacts.md](contacts.md)).",
        "run, load",
    ),
    "freshness": (
        "reusing recent answers",
        "An answer younger than its TTL is reused (`capability.reused = true`), not asked "
        "again. With a window, keep `ttl_days` longer than a full refresh of the list takes "
        "([operations.md](operations.md#a-first-real-night-step-by-step)).",
        "run, plan",
    ),
    "collect": (
        "waiting for callbacks",
        "How long a run waits for answers, how it watches the receiver, and when it ends "
        "incomplete (exit 3).",
        "run, collect",
    ),
    "plan": (
        "nightly windows",
        "A run that fits a time window asks only what the window can answer, stalest first "
        "([operations.md](operations.md#nightly-windows-and-rolling-refresh)).",
        "run, plan",
    ),
    "warehouse": (
        "working state, lake and catalog",
        "The three places of [design.md](design.md#5-data-contract): `state_path` and "
        "`lake_dir` default to `state.duckdb` and `lake/` beside `path`, so moving `path` "
        "moves all three. Every command that opens the working state reads them.",
        STATE,
    ),
    "reports": ("report files", "What `report` writes and where.", "run, report"),
    "simulator": (
        "the Sinch stand-in",
        'Read only by `capaudit simulate` and by runs against `base_url = "embedded"`; '
        "ignored against the real API. `capaudit simulate` flags (`--latency-ms`, "
        "`--rate-limit`, `--webhook-rate`, `--seed`, ...) override the keys of the same name.",
        EMBEDDED,
    ),
    "metrics": (
        "batch-job metrics",
        "Gauges `capaudit run` writes when it ends, whatever its outcome (names and alert "
        "rules: [operations.md](operations.md#metrics-and-alerts)). Both empty: none.",
        "run",
    ),
    "storage": (
        "object storage (S3)",
        "How capaudit reaches S3-compatible storage, used only where a location is an `s3://` "
        "URL (`[receiver] landing_url`, `[warehouse] lake_url`). Credentials are never keys "
        "here: they come from the standard AWS chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, "
        "`AWS_PROFILE`, web identity, container or instance role) "
        "([operations.md](operations.md#several-hosts)).",
        "serve, run, collect, publish, purge",
    ),
    "logging": (
        "log lines",
        "Log lines go to stderr; they never hold a secret or a full phone number.",
        "every command",
    ),
}

KEYS: dict[str, KeyDoc] = {
    # [sinch]
    "sinch.base_url": KeyDoc(
        '`"embedded"`: start the simulator and a receiver in-process (the demo); `""`: the '
        "region's endpoint (`https://<region>.conversation.api.sinch.com`); or any URL.",
        "URL",
    ),
    "sinch.region": KeyDoc(
        "`us`, `eu` or `br`: where the Conversation app lives; used when `base_url` is empty."
    ),
    "sinch.project_id": KeyDoc("The Sinch project (dashboard header)."),
    "sinch.app_id": KeyDoc("The Conversation app whose capabilities and webhook are used."),
    "sinch.auth": KeyDoc(
        '`"oauth2"`: a token from `token_url`, fetched once and shared; `"basic"`: the access '
        "key on every request (HTTP Basic)."
    ),
    "sinch.token_url": KeyDoc(
        'The OAuth2 token endpoint (`auth = "oauth2"`); an embedded run uses the simulator\'s.',
        "URL",
    ),
    "sinch.timeout_seconds": KeyDoc("Timeout of one HTTP request to Sinch.", "seconds"),
    # [dispatch]
    "dispatch.rate_per_second": KeyDoc(
        "Ceiling of the query rate, never exceeded over any one-second window (nor Sinch's 800/s).",
        "queries/s",
        "run, plan, submit, collect",
    ),
    "dispatch.window_margin_ms": KeyDoc(
        "Floor added to the measured spread of send-to-arrival delays when the pacer checks "
        "its one-second windows.",
        "ms",
    ),
    "dispatch.max_in_flight": KeyDoc("Requests awaiting Sinch's answer at once, at most.", "count"),
    "dispatch.max_attempts": KeyDoc(
        "Attempts per request on 429, 5xx and connection errors before it is REQUEST_FAILED.",
        "count",
    ),
    "dispatch.backoff_base_seconds": KeyDoc(
        "First step of the exponential back-off (full jitter) between attempts.", "seconds"
    ),
    "dispatch.backoff_max_seconds": KeyDoc("Cap of one back-off step.", "seconds"),
    "dispatch.requery_transient": KeyDoc(
        "Ask once more targets whose answer reported a transient failure: as the answer lands, "
        "in the same paced stream as the first asks, and while collecting for those landing "
        "later (not in a window run: those wait for a later night).",
        read_by="run, submit, collect",
    ),
    "dispatch.pace_to_callbacks": KeyDoc(
        "Hold the answers still awaited to what the measured callback rate clears in "
        "`callback_backlog_seconds`; false sends at `rate_per_second` regardless.",
        read_by="run, submit",
    ),
    "dispatch.callback_backlog_seconds": KeyDoc(
        "How many seconds of callbacks may be awaited at once when pacing to callbacks.",
        "seconds",
        "run, submit",
    ),
    # [receiver]
    "receiver.host": KeyDoc(
        "Interface `serve` listens on; with `port`, also where `collect` polls `/healthz`.",
        read_by="serve, run, collect",
    ),
    "receiver.port": KeyDoc("Port `serve` listens on.", "TCP port", "serve, run, collect"),
    "receiver.public_url": KeyDoc(
        "The URL Sinch calls: the webhook is registered with it (`run`, `webhooks ensure`) and "
        "`check` probes it.",
        "URL",
        "run, webhooks, check",
    ),
    "receiver.landing_dir": KeyDoc(
        "Where receivers write landing segments and the job ingests them (shared by every "
        "receiver and the job).",
        "path",
        "serve, run, plan, submit, collect, purge",
    ),
    "receiver.landing_url": KeyDoc(
        "`s3://bucket/prefix/`: receivers write each group-committed batch as one object there "
        "(conditional PUT, acknowledged once stored) and the job ingests from it, instead of "
        "`landing_dir`; empty: `landing_dir`. Reached as `[storage]` says.",
        "URL",
        "serve, run, plan, submit, collect, purge",
    ),
    "receiver.max_body_bytes": KeyDoc(
        "Largest callback body accepted (413 above; 256 KiB).", "bytes"
    ),
    "receiver.max_signature_age_seconds": KeyDoc(
        "Refuse (401) a correctly signed callback signed longer ago than this; 0: never refuse "
        "one for its age (redeliveries after an outage carry old signatures).",
        "seconds",
    ),
    "receiver.group_commit_ms": KeyDoc(
        "Callbacks arriving within this of each other share one write and one fsync.", "ms"
    ),
    "receiver.segment_max_bytes": KeyDoc(
        "A landing segment is closed (renamed to `.ndjson`) at this size (64 MiB).", "bytes"
    ),
    "receiver.segment_max_age_seconds": KeyDoc(
        "... or at this age, whichever comes first.", "seconds"
    ),
    "receiver.insecure": KeyDoc(
        "Accept unsigned callbacks (local experiments only; a warning on every request)."
    ),
    "receiver.durable": KeyDoc(
        "false skips fsync: only to measure what durability costs (`make bench-receiver`)."
    ),
    # [contacts]
    "contacts.paths": KeyDoc(
        "Contact files or globs read when `--contacts` is not given (CSV, gzip CSV, Parquet).",
        "paths",
    ),
    "contacts.phone_channels": KeyDoc(
        "Channels asked for a row that has only a phone number.", "channels"
    ),
    "contacts.contact_id_channels": KeyDoc(
        "Channels asked for a row that has only a `contact_id`.", "channels"
    ),
    "contacts.default_region": KeyDoc(
        'Region of national numbers without a country code (e.g. `"SE"`); empty: such '
        "numbers are rejected as `phone_without_country`.",
        "region code",
    ),
    "contacts.create_missing": KeyDoc(
        "Create a contact Sinch has none for (Contacts API, within the 800/s) and ask once "
        "more; false: such targets are `NOT_A_CONTACT`.",
        read_by="run, collect",
    ),
    "contacts.contact_id_column": KeyDoc("Input column holding the contact id.", "column name"),
    "contacts.phone_column": KeyDoc("Input column of wide files: the phone number.", "column name"),
    "contacts.channel_column": KeyDoc("Input column of long files: the channel.", "column name"),
    "contacts.identity_column": KeyDoc(
        "Input column of long files: the identity on that channel.", "column name"
    ),
    # [freshness]
    "freshness.ttl_days": KeyDoc(
        "An answer younger than this is reused instead of asked again; late answers are kept "
        "as long as the longest TTL.",
        "days",
    ),
    "freshness.channels": KeyDoc(
        "Per-channel TTLs overriding `ttl_days`, e.g. `RCS = 3` under `[freshness.channels]`.",
        "days per channel",
    ),
    # [collect]
    "collect.deadline_seconds": KeyDoc(
        "After the last accepted request, how long to wait for callbacks (`--deadline` "
        "overrides; a window ends collecting by its end).",
        "seconds",
    ),
    "collect.poll_interval_seconds": KeyDoc(
        "The longest collecting waits between two looks for newly landed callbacks; it looks "
        "at once when the last answer awaited (or one to ask again) lands.",
        "seconds",
    ),
    "collect.callback_rate_per_second": KeyDoc(
        "The callback rate expected when no earlier run measured one: sizes a window, paces "
        "sending before callbacks land, and `check` warns when the app's webhook rate is lower.",
        "callbacks/s",
        "run, plan, submit, check",
    ),
    "collect.max_no_response_share": KeyDoc(
        "Above this share of `NO_RESPONSE` among the queried targets the run ends incomplete "
        "(exit 3, report marked so).",
        "share 0-1",
        "run, collect, report",
    ),
    "collect.receiver_health_url": KeyDoc(
        "Polled while collecting; empty: `http://<[receiver] host>:<port>/healthz`.", "URL"
    ),
    "collect.health_interval_seconds": KeyDoc("How often the receiver is polled.", "seconds"),
    # [plan]
    "plan.window": KeyDoc(
        'A nightly window (`"6h"`, `"90m"`, seconds): ask only what it can answer at the '
        "expected callback rate, stalest first; empty: no window. `--window` overrides.",
        "duration",
    ),
    "plan.window_reserve_seconds": KeyDoc(
        "The most of the window's end not counted for answering: the reserve is 10% of the "
        "window, at most this (a `25s` window keeps 2.5 s). Its first half is for the last "
        "callbacks, its second for the build, report and publication (collecting stops "
        "half-way).",
        "seconds",
    ),
    # [warehouse]
    "warehouse.path": KeyDoc(
        "The analysts' catalog: a read-only DuckDB file of views over the lake.", "path"
    ),
    "warehouse.state_path": KeyDoc(
        "The job's working state (only capaudit opens it; holds the run lock); empty: "
        "`state.duckdb` beside `path`.",
        "path",
    ),
    "warehouse.lake_dir": KeyDoc(
        "Published runs as hive-partitioned Parquet; empty: `lake/` beside `path`.", "path"
    ),
    "warehouse.lake_url": KeyDoc(
        "`s3://bucket/prefix/`: every publication is also uploaded there (the same hive "
        "layout, `_published.json`, and `_catalog.sql`, the views analysts run with DuckDB's "
        "httpfs); the local lake and catalog stay. Empty: local only. Reached as `[storage]` "
        "says.",
        "URL",
        "run, publish, purge",
    ),
    # [reports]
    "reports.dir": KeyDoc(
        "Reports go to `<dir>/<run_id>/`; `purge` removes old ones.", "path", "run, report, purge"
    ),
    "reports.channel_preference": KeyDoc(
        "Channel order for `routing` and `channel_order` (the first reachable one is a "
        "contact's recommended channel).",
        "channels",
        "run, build, report, publish",
    ),
    "reports.trend_runs": KeyDoc("Runs of the same kind on the report's trend chart.", "count"),
    # [simulator]
    "simulator.latency_ms": KeyDoc("Simulated latency of every API call.", "ms"),
    "simulator.rate_limit": KeyDoc("Requests per second per project; 429 above it.", "requests/s"),
    "simulator.retry_after": KeyDoc("Send `Retry-After` with 429s (Sinch documents none, so off)."),
    "simulator.fault_5xx_rate": KeyDoc("Share of API calls answered 503.", "share 0-1"),
    "simulator.fault_drop_rate": KeyDoc(
        "Share of API calls whose connection is dropped.", "share 0-1"
    ),
    "simulator.webhook_rate": KeyDoc(
        "Callbacks delivered per second per app (Sinch's default: 25); also the app's "
        "`rate_limits.webhooks`.",
        "callbacks/s",
    ),
    "simulator.callback_delay_ms": KeyDoc(
        "Mean delay from query to callback (uniform between 0.2 and 1.8 times it).", "ms"
    ),
    "simulator.callback_duplicate_rate": KeyDoc("Share of callbacks delivered twice.", "share 0-1"),
    "simulator.callback_drop_rate": KeyDoc("Share of callbacks never delivered.", "share 0-1"),
    "simulator.omit_request_id_share": KeyDoc(
        "Share of callbacks sent without `request_id` (seeded).", "share 0-1"
    ),
    "simulator.delivery_max_attempts": KeyDoc(
        "Deliveries of one callback tried (with back-off) before it is given up.", "count"
    ),
    "simulator.token_ttl_seconds": KeyDoc("Lifetime of an OAuth2 token it issues.", "seconds"),
    "simulator.seed": KeyDoc("Seed of the outcome model (same seed, same answers).", "integer"),
    "simulator.state_path": KeyDoc(
        "JSON file keeping webhooks and tokens (and created contacts beside it) across "
        "restarts; empty: in memory (`--state-file` overrides).",
        "path",
    ),
    "simulator.key_id": KeyDoc("Access key id it insists on; empty: any."),
    "simulator.key_secret": KeyDoc("Access key secret it insists on; empty: any."),
    "simulator.project_id": KeyDoc("Project id it insists on; empty: any."),
    "simulator.app_id": KeyDoc("App id it insists on; empty: any."),
    "simulator.processing_mode": KeyDoc(
        '`"CONVERSATION"` or `"DISPATCH"` (stores no contacts, refuses `contact_id` recipients).'
    ),
    "simulator.contacts_must_exist": KeyDoc(
        "An `identified_by` query none of whose identities has a contact is not checked "
        "(Sinch's Capability Query page)."
    ),
    "simulator.known_contact_share": KeyDoc(
        "Share of phone numbers that already have a contact (seeded per number).", "share 0-1"
    ),
    "simulator.contact_not_found": KeyDoc(
        'A query for no contact: one CONTACT_NOT_FOUND `"callback"`, or an `"error"` (404).'
    ),
    # [storage]
    "storage.endpoint_url": KeyDoc(
        "The S3 endpoint (any S3-compatible server); empty: `AWS_ENDPOINT_URL` (or the "
        "profile's `endpoint_url`), else AWS itself.",
        "URL",
    ),
    "storage.region": KeyDoc("The bucket's region; empty: the AWS chain's, else `us-east-1`."),
    "storage.addressing_style": KeyDoc(
        "`path` (`http://host/bucket/key`, for servers without wildcard DNS), `virtual` "
        "(`http://bucket.host/key`) or `auto` (botocore decides)."
    ),
    "storage.connect_timeout_seconds": KeyDoc(
        "Give up connecting to the store after this long (then retry).", "seconds"
    ),
    "storage.read_timeout_seconds": KeyDoc(
        "Give up on an answer after this long (then retry): a receiver answers 503 once its "
        "attempts are spent rather than hold the sender.",
        "seconds",
    ),
    "storage.max_attempts": KeyDoc(
        "Attempts per request, first included (botocore's standard retry mode: throttling, "
        "5xx and timeouts, exponential back-off with jitter)."
    ),
    # [metrics]
    "metrics.textfile": KeyDoc(
        "node-exporter textfile collector file (must end in `.prom`), written under a temporary "
        "name and renamed; mode 0644 (no contact data). Empty: none.",
        "path",
    ),
    "metrics.pushgateway_url": KeyDoc(
        'Prometheus Pushgateway to push to (`job="capaudit"`); empty: none.', "URL"
    ),
    # [logging]
    "logging.level": KeyDoc("`DEBUG`, `INFO`, `WARNING` or `ERROR` (any case)."),
    "logging.format": KeyDoc(
        '`"auto"`: readable lines on a terminal, JSON lines otherwise; `"json"` or '
        '`"console"` always.'
    ),
}

SECRETS: tuple[SecretDoc, ...] = (
    SecretDoc(
        "SINCH_KEY_ID",
        "Id of the project's access key (Sinch dashboard, Settings, Access keys).",
        SINCH_CALLERS,
    ),
    SecretDoc("SINCH_KEY_SECRET", "Its secret (shown once when created).", SINCH_CALLERS),
    SecretDoc(
        "CAPAUDIT_WEBHOOK_SECRET",
        "The secret callbacks are signed with; comma-separated, newest first, while rotating "
        "(webhooks are registered with the first).",
        "serve, run, webhooks, check",
    ),
    SecretDoc(
        "CAPAUDIT_PSEUDONYM_KEY",
        "HMAC key of pseudonymised exports (at least 16 characters); keep it as long as "
        "exports must stay comparable.",
        "report --pseudonymise",
    ),
)

# Environment variables read with os.environ (found by settings_doc.env_reads).
ENVIRONMENT: dict[str, KeyDoc] = {
    "AWS_ENDPOINT_URL": KeyDoc(
        "The S3 endpoint when `[storage] endpoint_url` is empty (read by botocore, and by "
        "`pipeline.lake.scan` for polars); with the other standard AWS variables "
        "(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, `AWS_REGION`, ...).",
        read_by="serve, run, collect, publish, purge",
    ),
    "AWS_ENDPOINT_URL_S3": KeyDoc(
        "The same for S3 only; wins over `AWS_ENDPOINT_URL`.",
        read_by="serve, run, collect, publish, purge",
    ),
    "CAPAUDIT_DUCKDB_MEMORY_LIMIT": KeyDoc(
        "DuckDB `memory_limit` of the working state (e.g. `4GB`); unset: a quarter of the "
        "memory the machine (or the process's cgroup) has, at most 1 GiB, which keeps a run's "
        "peak memory under 1.5 GB whatever the size of the list. Ingest batches are sized to "
        "it, beyond it temporary tables spill to disk.",
        read_by=STATE,
    ),
    "CAPAUDIT_PUBLISH_PAUSE_SECONDS": KeyDoc(
        "Test hook: wait this long with the run's partitions staged, before anything visible "
        "changes (the crash tests kill the job there). Never set it in production.",
        read_by="run, publish",
    ),
    "CAPAUDIT_PARENT_PID": KeyDoc(
        "Set by a run for the simulator and receiver it starts, so they stop when it dies. "
        "Do not set it.",
        read_by="serve, simulate",
    ),
    "STATE_DIRECTORY": KeyDoc(
        "Where `scripts/capaudit-nightly` keeps the id of an unfinished run (`unfinished-run`) "
        "to resume it the next night; systemd sets it for units with `StateDirectory=`.",
        read_by="scripts/capaudit-nightly",
    ),
    "BENCH_QUERIES": KeyDoc(
        "Queries sent by the dispatch benchmark.", read_by="make bench-dispatch"
    ),
    "BENCH_RATE": KeyDoc(
        "Configured rate of the dispatch benchmark (queries/s).", read_by="make bench-dispatch"
    ),
    "BENCH_LATENCY_MS": KeyDoc(
        "Simulated latency of the dispatch benchmark.", read_by="make bench-dispatch"
    ),
    "BENCH_IN_FLIGHT": KeyDoc(
        "Requests in flight of the dispatch benchmark.", read_by="make bench-dispatch"
    ),
    "BENCH_CALLBACKS": KeyDoc(
        "Signed callbacks sent to the receiver.", read_by="make bench-receiver"
    ),
    "BENCH_SENDERS": KeyDoc(
        "Concurrent senders of the receiver benchmark.", read_by="make bench-receiver"
    ),
    "BENCH_ROWS": KeyDoc("Rows of the contacts CSV loaded.", read_by="make bench-warehouse"),
    "BENCH_TARGETS": KeyDoc("Targets ingested and built.", read_by="make bench-warehouse"),
    "BENCH_DIR": KeyDoc("Working directory of the benchmark.", read_by="make bench-warehouse"),
    "BENCH_LATEST_TARGETS": KeyDoc(
        "Targets per run of the `latest_query_ratio` history.", read_by="make bench-warehouse"
    ),
    "BENCH_LATEST_RUNS": KeyDoc(
        "Runs of the `latest_query_ratio` history.", read_by="make bench-warehouse"
    ),
}
