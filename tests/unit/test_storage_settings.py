"""`[storage]` and the s3:// keys: validated when the config is read, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.landing.objects import KEY, folder_of, object_name
from pipeline.landing.place import landing_of
from pipeline.settings import load_settings
from pipeline.storage import S3Location, parse_s3
from pipeline.storage.settings import StorageSettings


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CAPAUDIT_RECEIVER__LANDING_URL", "/srv/landing", r"\[receiver\] landing_url"),
        ("CAPAUDIT_WAREHOUSE__LAKE_URL", "gs://bucket/lake", r"\[warehouse\] lake_url"),
        ("CAPAUDIT_STORAGE__ENDPOINT_URL", "127.0.0.1:8333", r"\[storage\] endpoint_url"),
        ("CAPAUDIT_STORAGE__ADDRESSING_STYLE", "dns", r"\[storage\] addressing_style"),
        ("CAPAUDIT_STORAGE__MAX_ATTEMPTS", "0", r"\[storage\] max_attempts"),
    ],
)
def test_bad_storage_keys_fail_loudly(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, env={name: value})


def test_landing_is_a_directory_unless_a_url_is_given() -> None:
    settings = load_settings(None, env={})
    assert landing_of(settings.receiver, settings.storage) == Path("data/landing")
    assert settings.storage == StorageSettings()


def test_object_names_sort_in_write_order_within_a_folder() -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 12, 8, 23, 59, tzinfo=UTC)
    names = [object_name(when, "rx1", "rx1-42-ab12cd-0", n) for n in (9, 10, 11)]
    assert names == sorted(names)
    assert all(KEY.fullmatch(n) for n in names)
    assert folder_of(names[0]) == "2026-12-08/rx1/rx1-42-ab12cd-0/"


def test_s3_locations() -> None:
    where = parse_s3("s3://audit/landing")
    assert where == S3Location("audit", "landing/")
    assert where.key("a/b") == "landing/a/b"
    assert where.relative("landing/a/b") == "a/b"
    assert where.url("x") == "s3://audit/landing/x"
    with pytest.raises(ConfigError):
        parse_s3("http://audit/landing")
