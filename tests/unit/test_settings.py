"""Configuration: TOML, environment overrides, secrets from the environment only, loud errors."""

from __future__ import annotations

import re
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


def test_no_signature_age_limit_by_default() -> None:
    assert load_settings(None, env={}).receiver.max_signature_age_seconds == 0


def test_the_old_tolerance_key_still_limits_the_age_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write(tmp_path, "[receiver]\ntimestamp_tolerance_seconds = 300\n")
    assert load_settings(config, env={}).receiver.max_signature_age_seconds == 300
    assert "'timestamp_tolerance_seconds' is deprecated" in caplog.text
    env = {"CAPAUDIT_RECEIVER__TIMESTAMP_TOLERANCE_SECONDS": "600"}
    assert load_settings(None, env=env).receiver.max_signature_age_seconds == 600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # 0 refused nearly every callback under the old name; under the new one it means no
        # limit: the config must not silently change meaning.
        ("timestamp_tolerance_seconds = 0", "set 'max_signature_age_seconds' instead"),
        (
            "timestamp_tolerance_seconds = 300\nmax_signature_age_seconds = 60",
            "deprecated name of 'max_signature_age_seconds', which [receiver] has too",
        ),
        ("max_signature_age_seconds = -1", "max_signature_age_seconds must be >= 0"),
    ],
)
def test_signature_age_keys_that_would_change_meaning_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(write(tmp_path, f"[receiver]\n{text}\n"), env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[contacts]\nphone_channels = ["WHATSAPP", "VIBER"]',
            "[contacts] phone_channels: channel 'VIBER' is no longer accepted: only Sinch's "
            "dotnet SDK still lists it (the java and node SDKs dropped it); use 'VIBERBM'",
        ),
        (
            '[reports]\nchannel_preference = ["viber"]',
            "[reports] channel_preference: channel 'viber'",
        ),
        (
            '[contacts]\ncontact_id_channels = ["CHANNEL_UNSPECIFIED"]',
            "'CHANNEL_UNSPECIFIED' is not a channel to ask for",
        ),
        ('[contacts]\nphone_channels = ["FAX"]', "unknown channel 'FAX' (Sinch's channels: "),
    ],
)
def test_channels_the_sdks_do_not_list_are_refused_by_key_and_value(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(write(tmp_path, text), env={})


def test_every_channel_comes_from_the_java_and_node_sdks() -> None:
    from pipeline.sinch.models import CHANNEL_SOURCES, CHANNELS

    assert "VIBERBM" in CHANNELS
    assert not {"VIBER", "CHANNEL_UNSPECIFIED"} & set(CHANNELS)
    assert all(CHANNEL_SOURCES[c] == {"java", "node"} for c in CHANNELS)
