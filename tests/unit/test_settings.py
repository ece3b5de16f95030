"""Configuration: TOML, environment overrides, secrets from the environment only, loud errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Secret, load_settings
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_configs_load() -> None:
    default = load_settings(REPO / "configs" / "default.toml", env={})
    assert default.sinch.embedded
    example = load_settings(REPO / "configs" / "sinch.example.toml", env={})
    assert example.sinch.api_base_url() == "https://eu.conversation.api.sinch.com"


def test_environment_overrides_and_per_channel_ttls(tmp_path: Path) -> None:
    config = write(tmp_path, "[dispatch]\nrate_per_second = 5\n[freshness.channels]\nrcs = 1\n")
    settings = load_settings(
        config,
        env={
            "CAPAUDIT_DISPATCH__RATE_PER_SECOND": "50",
            "CAPAUDIT_CONTACTS__PHONE_CHANNELS": "SMS,RCS",
            "CAPAUDIT_RECEIVER__INSECURE": "true",
        },
    )
    assert settings.dispatch.rate_per_second == 50.0
    assert settings.contacts.phone_channels == ("SMS", "RCS")
    assert settings.receiver.insecure is True
    assert (settings.freshness.ttl_for("RCS"), settings.freshness.ttl_for("SMS")) == (1.0, 7.0)


def test_secrets_come_from_the_environment_or_a_file_and_never_show(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("from-a-file\n")
    settings = load_settings(
        None,
        env={
            "SINCH_KEY_ID": "id",
            "SINCH_KEY_SECRET_FILE": str(secret_file),
            "CAPAUDIT_WEBHOOK_SECRET": "new,old",
        },
    )
    assert settings.secrets.key_secret == Secret("from-a-file")
    assert [s.reveal() for s in settings.secrets.webhook_secrets] == ["new", "old"]
    assert "from-a-file" not in repr(settings)
    assert "new" not in str(settings.secrets)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[dispatch]\nrate = 5\n", {}, "unknown key 'rate' in [dispatch]"),
        ("[nightly]\nx = 1\n", {}, "unknown section [nightly]"),
        ("[dispatch]\nmax_in_flight = 'many'\n", {}, "expected an integer"),
        ("[sinch]\nregion = 'mars'\n", {}, "region must be one of us, eu, br"),
        ("[simulator]\nomit_request_id_share = 1.5\n", {}, "omit_request_id_share must be"),
        ("[simulator]\nknown_contact_share = -0.1\n", {}, "known_contact_share must be between"),
        (
            "[simulator]\nprocessing_mode = 'BATCH'\n",
            {},
            "processing_mode must be one of CONVERSATION, DISPATCH",
        ),
        ("", {"CAPAUDIT_SIMULATOR__CONTACT_NOT_FOUND": "404"}, "contact_not_found must be"),
        ("[simulator]\ncontacts_must_exist = 'yes'\n", {}, "expected true or false"),
        ("[dispatch\n", {}, "not valid TOML"),
        ("", {"CAPAUDIT_DISPATCH__MAX_ATTEMPTS": "x"}, "CAPAUDIT_DISPATCH__MAX_ATTEMPTS"),
    ],
)
def test_bad_configuration_names_what_and_where(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text), env=env)
