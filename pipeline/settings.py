"""Configuration: one TOML file, environment overrides, secrets from the environment only.

Precedence, highest first: `CAPAUDIT_<SECTION>__<KEY>` environment variables, the TOML file,
the defaults below. Unknown sections or keys and values of the wrong type fail loudly, naming
the key and where it came from. Secrets (`SINCH_KEY_ID`, `SINCH_KEY_SECRET`,
`CAPAUDIT_WEBHOOK_SECRET`, `CAPAUDIT_PSEUDONYM_KEY`) are never read from the TOML file; each
may also be given as a file path in `<NAME>_FILE` (systemd credentials, container secrets).
They are held in `Secret`, whose repr is masked so they cannot leak through logs or tracebacks.

    settings = load_settings(Path("configs/default.toml"))
    settings.dispatch.rate_per_second  # 200.0 (the dataclass default, without a file, is 8.0)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import ConfigError
from pipeline.metrics.settings import MetricsSettings
from pipeline.sinch.models import PROCESSING_MODES
from pipeline.storage.settings import StorageSettings

log = logging.getLogger(__name__)
DEFAULT_CONFIG = Path("configs/default.toml")
EMBEDDED = "embedded"
REGIONS = ("us", "eu", "br")
ENV_PREFIX = "CAPAUDIT_"


class Secret:
    """A secret string whose repr and str never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SinchSettings:
    base_url: str = EMBEDDED
    region: str = "eu"
    project_id: str = "capaudit-demo-project"
    app_id: str = "01CAPAUDITDEMOAPP000000000"
    auth: str = "oauth2"
    token_url: str = "https://auth.sinch.com/oauth2/token"  # noqa: S105 - a URL, not a secret
    timeout_seconds: float = 30.0

    @property
    def embedded(self) -> bool:
        return self.base_url == EMBEDDED

    def api_base_url(self) -> str:
        """The API root: the explicit `base_url`, or the region's public endpoint."""
        if self.base_url and self.base_url != EMBEDDED:
            return self.base_url.rstrip("/")
        return f"https://{self.region}.conversation.api.sinch.com"


@dataclass(frozen=True)
class DispatchSettings:
    rate_per_second: float = 8.0
    # The window our pacer enforces is 1 s plus the measured spread of send-to-arrival delays
    # (pipeline/submit/pacing.py) plus this floor.
    window_margin_ms: float = 2.0
    max_in_flight: int = 64
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    requery_transient: bool = True
    # Self-pacing (pipeline/submit/backlog.py): hold the answers still awaited to what the measured
    # callback rate clears in this many seconds. false sends at rate_per_second regardless.
    pace_to_callbacks: bool = True
    callback_backlog_seconds: float = 30.0


@dataclass(frozen=True)
class ReceiverSettings:
    host: str = "127.0.0.1"
    port: int = 8751
    public_url: str = "http://127.0.0.1:8751/callbacks/sinch"
    landing_dir: str = "data/landing"
    # "s3://bucket/prefix/": land on object storage instead of landing_dir (pipeline/landing/
    # place.py); several hosts' receivers then share one prefix.
    landing_url: str = ""
    max_body_bytes: int = 256 * 1024
    # Refuse a correctly signed callback signed longer ago (or further in the future) than this;
    # 0: never refuse one for its age. Sinch publishes no window and re-delivers after outages
    # on an unpublished schedule, so a limit can lose redeliveries (docs/receiver.md).
    max_signature_age_seconds: float = 0.0
    group_commit_ms: float = 2.0
    segment_max_bytes: int = 64 * 1024 * 1024
    segment_max_age_seconds: float = 300.0
    insecure: bool = False
    durable: bool = True  # false skips fsync: only to measure what durability costs


@dataclass(frozen=True)
class ContactsSettings:
    paths: tuple[str, ...] = ("data/sample/contacts.csv",)
    phone_channels: tuple[str, ...] = ("WHATSAPP", "RCS", "SMS")
    contact_id_channels: tuple[str, ...] = ("WHATSAPP", "RCS", "SMS")
    default_region: str = ""
    # Sinch answers capability queries only for contacts that exist (CONVERSATION mode): true
    # creates the ones it has none for (Contacts API) and asks once more (submit/contacts.py).
    create_missing: bool = False
    contact_id_column: str = "contact_id"
    phone_column: str = "phone"
    channel_column: str = "channel"
    identity_column: str = "identity"


@dataclass(frozen=True)
class FreshnessSettings:
    ttl_days: float = 7.0
    channels: Mapping[str, float] = field(default_factory=dict)

    def ttl_for(self, channel: str) -> float:
        return float(self.channels.get(channel, self.ttl_days))


@dataclass(frozen=True)
class CollectSettings:
    deadline_seconds: float = 900.0
    poll_interval_seconds: float = 0.5
    # Sinch delivers 25 callbacks/s per app by default: used for estimates and lag warnings.
    callback_rate_per_second: float = 25.0
    # The completeness gate: a run with more NO_RESPONSE among its queried targets ends as
    # incomplete (exit 3) instead of reporting shares skewed by the missing answers.
    max_no_response_share: float = 0.02
    # The receiver's health, polled while collecting; "" means /healthz at the origin of
    # [receiver] public_url: where Sinch calls, not [receiver] host and port, which are this
    # host's and wrong for a receiver elsewhere (a proxy hiding it: "not checked", health.py).
    receiver_health_url: str = ""
    health_interval_seconds: float = 5.0

    def health_url(self, receiver: ReceiverSettings) -> str:
        """The URL whose 200 says the receiver is up."""
        if self.receiver_health_url:
            return self.receiver_health_url
        parts = urlsplit(receiver.public_url)
        return urlunsplit((parts.scheme, parts.netloc, "/healthz", "", ""))


@dataclass(frozen=True)
class PlanSettings:
    # A nightly window ("6h", "90m", seconds): ask only what it can answer, stalest first
    # (pipeline/window.py). Empty: no window, ask everything that is not fresh.
    window: str = ""
    # The window's end not counted for answering is 10% of the window, at most this
    # (pipeline/window.py): the last callbacks, then build, report and publication.
    window_reserve_seconds: float = 60.0


@dataclass(frozen=True)
class WarehouseSettings:
    """Where the three places of DESIGN §5 are. `state_path` and `lake_dir` default to
    `state.duckdb` and `lake/` beside the catalog, so moving `path` moves all three."""

    path: str = "data/warehouse.duckdb"  # the analysts' catalog: views over the lake
    state_path: str = ""  # the job's working state; only capaudit opens it
    lake_dir: str = ""  # published runs as hive-partitioned Parquet
    # "s3://bucket/lake/": each publication is also uploaded there, with a catalog script for
    # analysts off the box (pipeline/lake/bucket.py); the local lake and catalog stay.
    lake_url: str = ""

    @property
    def catalog(self) -> Path:
        return Path(self.path)

    @property
    def state(self) -> Path:
        return Path(self.state_path) if self.state_path else self.catalog.with_name("state.duckdb")

    @property
    def lake(self) -> Path:
        return Path(self.lake_dir) if self.lake_dir else self.catalog.with_name("lake")


@dataclass(frozen=True)
class ReportsSettings:
    dir: str = "data/reports"
    channel_preference: tuple[str, ...] = ("WHATSAPP", "RCS", "SMS")
    trend_runs: int = 14


CONTACT_NOT_FOUND_ANSWERS = ("callback", "error")


@dataclass(frozen=True)
class SimulatorSettings:
    latency_ms: float = 20.0
    rate_limit: int = 800
    # Sinch documents no Retry-After on its 429s: sent only when configured.
    retry_after: bool = False
    fault_5xx_rate: float = 0.0
    fault_drop_rate: float = 0.0
    webhook_rate: float = 25.0
    callback_delay_ms: float = 200.0
    callback_duplicate_rate: float = 0.0
    callback_drop_rate: float = 0.0
    omit_request_id_share: float = 0.0  # share of callbacks sent without request_id
    delivery_max_attempts: int = 8
    token_ttl_seconds: int = 3600
    seed: int = 1
    # Registered webhooks and issued tokens are kept in this JSON file, and created contacts in
    # <stem>.contacts.jsonl beside it, so that a restarted simulator still has them (Sinch
    # forgets none); empty: in memory only. Embedded runs set one of their own.
    state_path: str = ""
    # Credentials the simulator insists on; empty accepts any (it is a simulator: no real secret).
    key_id: str = ""
    key_secret: str = ""
    project_id: str = ""
    app_id: str = ""
    # The app (GET .../apps/{app_id}): CONVERSATION stores contacts, DISPATCH stores nothing and
    # refuses contact_id recipients (reference §10).
    processing_mode: str = "CONVERSATION"
    # Sinch's Capability Query page: queries run only for contacts that exist. true: an
    # identified_by query none of whose identities belongs to a contact is not checked.
    contacts_must_exist: bool = False
    # The share of phone numbers that already belong to a Sinch contact (seeded, per number).
    known_contact_share: float = 1.0
    # How a query for no contact is answered: one whole-request CONTACT_NOT_FOUND "callback",
    # or an "error" (404 NOT_FOUND) to the query itself.
    contact_not_found: str = "callback"


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "auto"


@dataclass(frozen=True)
class Secrets:
    key_id: Secret | None
    key_secret: Secret | None
    webhook_secrets: tuple[Secret, ...]
    pseudonym_key: Secret | None = None

    @property
    def webhook_secret(self) -> Secret | None:
        """The secret new webhooks are registered with: the first one listed."""
        return self.webhook_secrets[0] if self.webhook_secrets else None


@dataclass(frozen=True)
class Settings:
    sinch: SinchSettings = field(default_factory=SinchSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    receiver: ReceiverSettings = field(default_factory=ReceiverSettings)
    contacts: ContactsSettings = field(default_factory=ContactsSettings)
    freshness: FreshnessSettings = field(default_factory=FreshnessSettings)
    collect: CollectSettings = field(default_factory=CollectSettings)
    plan: PlanSettings = field(default_factory=PlanSettings)
    warehouse: WarehouseSettings = field(default_factory=WarehouseSettings)
    reports: ReportsSettings = field(default_factory=ReportsSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    secrets: Secrets = field(default_factory=lambda: Secrets(None, None, ()))
    source: str = "<defaults>"

    def replace(self, section: str, **changes: Any) -> Settings:
        """A copy with some keys of one section changed (tests, CLI flags)."""
        updated = dataclasses.replace(getattr(self, section), **changes)
        return dataclasses.replace(self, **{section: updated})


SECTIONS: dict[str, type[Any]] = {
    name: hint
    for name, hint in get_type_hints(Settings).items()
    if name not in ("secrets", "source")
}


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file at `path` (or only defaults), apply env overrides, read secrets."""
    env = os.environ if env is None else env
    raw = _read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    _apply_env_overrides(raw, env)
    sections = {name: _build_section(name, raw.pop(name, {}), source) for name in SECTIONS}
    if raw:
        raise ConfigError(f"{source}: unknown section [{sorted(raw)[0]}]")
    settings = Settings(**sections, secrets=read_secrets(env), source=source)
    _validate(settings)
    return settings


def read_secrets(env: Mapping[str, str]) -> Secrets:
    webhook = _secret_value("CAPAUDIT_WEBHOOK_SECRET", env)
    rotation = tuple(Secret(s.strip()) for s in (webhook or "").split(",") if s.strip())
    key_id, key_secret = _secret_value("SINCH_KEY_ID", env), _secret_value("SINCH_KEY_SECRET", env)
    pseudonym = _secret_value("CAPAUDIT_PSEUDONYM_KEY", env)
    return Secrets(
        key_id=Secret(key_id) if key_id else None,
        key_secret=Secret(key_secret) if key_secret else None,
        webhook_secrets=rotation,
        pseudonym_key=Secret(pseudonym) if pseudonym else None,
    )


def _secret_value(name: str, env: Mapping[str, str]) -> str | None:
    if env.get(name):
        return env[name]
    file_name = env.get(f"{name}_FILE")
    if not file_name:
        return None
    try:
        return Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE={file_name}: cannot read ({exc.strerror})") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section not in SECTIONS:
            raise ConfigError(f"environment variable {name}: unknown section [{section}]")
        raw.setdefault(section, {})[key] = _EnvValue(name, value)


class _EnvValue(str):
    """A value from the environment: still a string, cast once its target type is known."""

    origin: str

    def __new__(cls, origin: str, value: str) -> _EnvValue:
        instance = super().__new__(cls, value)
        instance.origin = origin
        return instance


# Keys renamed since: (section, old name) -> new name. The old name still works, with a
# warning, only where it means exactly what the new one does (`_renamed`).
RENAMED_KEYS: dict[tuple[str, str], str] = {
    ("receiver", "timestamp_tolerance_seconds"): "max_signature_age_seconds",
}


def _build_section(name: str, values: Any, source: str) -> Any:
    cls = SECTIONS[name]
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        where = value.origin if isinstance(value, _EnvValue) else f"{source}: [{name}] {key}"
        current = RENAMED_KEYS.get((name, key), key)
        if current not in known:
            raise ConfigError(f"{where}: unknown key '{key}' in [{name}]")
        if current != key and current in values:
            raise ConfigError(
                f"{where}: '{key}' is the deprecated name of '{current}', which [{name}] "
                "has too; keep only one"
            )
        kwargs[current] = _cast(value, hints[current], where)
        if current != key:
            _renamed(key, current, kwargs[current], where)
    return cls(**kwargs)


def _renamed(old: str, new: str, value: Any, where: str) -> None:
    """Accept a deprecated key that means what its new name means, saying so; refuse one whose
    value the new name reads differently. `timestamp_tolerance_seconds` refused signatures
    more than N seconds old (or ahead), as `max_signature_age_seconds` does, but there 0
    means no limit: an old 0 (which refused nearly everything) must not silently become it."""
    if value <= 0:
        raise ConfigError(
            f"{where}: '{old}' is replaced by '{new}', where 0 means no age limit; "
            f"set '{new}' instead ({old} = {value} refused almost every callback)"
        )
    log.warning(
        "%s: '%s' is deprecated; it still refuses signatures older than %s s, "
        "rename it '%s' (0 there: no age limit, the default)",
        where,
        old,
        value,
        new,
    )


def _cast(value: Any, hint: Any, where: str) -> Any:
    target = getattr(hint, "__origin__", hint)
    if isinstance(value, _EnvValue) and target is not str:
        value = _parse_env_literal(str(value), where)
    try:
        return _CASTS[target](value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected {_TYPE_NAMES[target]}, got {value!r}") from exc


def _parse_env_literal(text: str, where: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if "," in text:
            return [part.strip() for part in text.split(",") if part.strip()]
        return text


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    return float(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    return value


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return str(value)


def _as_str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(value)
    return tuple(value)


def _as_number_map(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise TypeError(value)
    return {str(k).upper(): _as_number(v) for k, v in value.items()}


_CASTS: dict[Any, Any] = {
    bool: _as_bool,
    float: _as_number,
    int: _as_int,
    str: _as_str,
    tuple: _as_str_tuple,
    Mapping: _as_number_map,
}
_TYPE_NAMES: dict[Any, str] = {
    bool: "true or false",
    float: "a number",
    int: "an integer",
    str: "a string",
    tuple: "a list of strings",
    Mapping: "a table of numbers",
}


def _validate(settings: Settings) -> None:
    where = settings.source
    checks: list[tuple[bool, str]] = [
        (settings.sinch.auth in ("oauth2", "basic"), "[sinch] auth must be 'oauth2' or 'basic'"),
        (settings.sinch.region in REGIONS, f"[sinch] region must be one of {', '.join(REGIONS)}"),
        (bool(settings.sinch.project_id), "[sinch] project_id is required"),
        (bool(settings.sinch.app_id), "[sinch] app_id is required"),
        (settings.dispatch.rate_per_second > 0, "[dispatch] rate_per_second must be > 0"),
        (settings.dispatch.max_in_flight >= 1, "[dispatch] max_in_flight must be >= 1"),
        (settings.dispatch.max_attempts >= 1, "[dispatch] max_attempts must be >= 1"),
        (
            settings.dispatch.callback_backlog_seconds > 0,
            "[dispatch] callback_backlog_seconds must be > 0",
        ),
        (settings.collect.deadline_seconds >= 0, "[collect] deadline_seconds must be >= 0"),
        (
            0 <= settings.collect.max_no_response_share <= 1,
            "[collect] max_no_response_share must be between 0 and 1",
        ),
        (
            settings.collect.health_interval_seconds > 0,
            "[collect] health_interval_seconds must be > 0",
        ),
        (settings.freshness.ttl_days >= 0, "[freshness] ttl_days must be >= 0"),
        (settings.plan.window_reserve_seconds >= 0, "[plan] window_reserve_seconds must be >= 0"),
        (settings.receiver.max_body_bytes > 0, "[receiver] max_body_bytes must be > 0"),
        (
            not settings.warehouse.lake_url or settings.warehouse.lake_url.startswith("s3://"),
            "[warehouse] lake_url must be an s3://bucket/prefix/ URL (or empty: local only)",
        ),
        (
            not settings.receiver.landing_url or settings.receiver.landing_url.startswith("s3://"),
            "[receiver] landing_url must be an s3://bucket/prefix/ URL (or empty: landing_dir)",
        ),
        (
            settings.receiver.max_signature_age_seconds >= 0,
            "[receiver] max_signature_age_seconds must be >= 0 (0: no limit)",
        ),
        (
            0 <= settings.simulator.omit_request_id_share <= 1,
            "[simulator] omit_request_id_share must be between 0 and 1",
        ),
        (
            0 <= settings.simulator.known_contact_share <= 1,
            "[simulator] known_contact_share must be between 0 and 1",
        ),
        (
            settings.simulator.processing_mode in PROCESSING_MODES,
            f"[simulator] processing_mode must be one of {', '.join(PROCESSING_MODES)}",
        ),
        (
            settings.simulator.contact_not_found in CONTACT_NOT_FOUND_ANSWERS,
            "[simulator] contact_not_found must be 'callback' or 'error'",
        ),
        (
            settings.logging.format in ("auto", "json", "console"),
            "[logging] format must be 'auto', 'json' or 'console'",
        ),
        *settings.metrics.checks(),
        *settings.storage.checks(),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{where}: {message}")
    _validate_channels(settings)
    if settings.plan.window:
        from pipeline.errors import UsageError
        from pipeline.window import parse_duration

        try:
            parse_duration(settings.plan.window, "[plan] window")
        except UsageError as exc:
            raise ConfigError(f"{where}: {exc}") from exc


def _validate_channels(settings: Settings) -> None:
    """Channel names end up in requests and SQL: only those Sinch's java and node SDKs list
    (pipeline/sinch/models.py) are accepted."""
    named = {
        "[contacts] phone_channels": settings.contacts.phone_channels,
        "[contacts] contact_id_channels": settings.contacts.contact_id_channels,
        "[reports] channel_preference": settings.reports.channel_preference,
        "[freshness.channels]": tuple(settings.freshness.channels),
    }
    for where, channels in named.items():
        for channel in channels:
            problem = _channel_problem(channel)
            if problem:
                raise ConfigError(f"{settings.source}: {where}: {problem}")


def _channel_problem(channel: str) -> str:
    """Why `channel` cannot be asked for, or '' when it can."""
    from pipeline.sinch.models import CHANNELS, RETIRED_CHANNELS, WHOLE_REQUEST_CHANNEL

    name = channel.upper()
    if name in CHANNELS:
        return ""
    if name in RETIRED_CHANNELS:
        return (
            f"channel {channel!r} is no longer accepted: only Sinch's dotnet SDK still lists it "
            f"(the java and node SDKs dropped it); use {RETIRED_CHANNELS[name]!r}"
        )
    if name == WHOLE_REQUEST_CHANNEL:
        return (
            f"{channel!r} is not a channel to ask for: Sinch puts it on callbacks about a "
            "whole request"
        )
    return f"unknown channel {channel!r} (Sinch's channels: {', '.join(CHANNELS)})"
