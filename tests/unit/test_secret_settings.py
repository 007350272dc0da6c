"""Secrets in the settings are never shown: SecretStr for each secret, and the passwords that
AMQP_URL and DATABASE_URL carry are redacted wherever the settings are printed (issue 11)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from services.api.settings import ApiSettings
from services.notifier.settings import NotifierSettings
from services.uploader.settings import UploaderSettings
from shared.config.redaction import redact_url
from shared.config.settings import CommonSettings

PASSWORD = "s3cret-pw"
URLS = {
    "amqp_url": f"amqp://albums:{PASSWORD}@rabbit1:5672/%2F,rabbit2,"
    f"amqp://other:{PASSWORD}@rabbit3:5673/v",
    "database_url": f"postgresql+psycopg://albums:{PASSWORD}@db:5432/albums",
}
#: A setting whose name says it is a secret must be a SecretStr.
SECRET_WORDS = ("password", "secret", "token", "keys")


@pytest.mark.parametrize(
    "settings_class", [CommonSettings, ApiSettings, UploaderSettings, NotifierSettings]
)
def test_every_secret_setting_is_a_secret_str(settings_class: type[CommonSettings]) -> None:
    for name, info in settings_class.model_fields.items():
        if any(word in name for word in SECRET_WORDS):
            assert info.annotation in (SecretStr, SecretStr | None), name


@pytest.mark.parametrize(
    "settings_class", [CommonSettings, ApiSettings, UploaderSettings, NotifierSettings]
)
def test_printing_the_settings_shows_no_password(
    settings_class: type[CommonSettings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_class(_env_file=None, **URLS)  # type: ignore[call-arg, arg-type]
    logging.getLogger("test").warning("settings: %s / %r", settings, settings)
    for shown in (repr(settings), str(settings), caplog.text):
        assert PASSWORD not in shown
    assert "rabbit1:5672" in repr(settings) and "db:5432" in repr(settings)
    # What the connections use is untouched.
    assert settings.amqp_url == URLS["amqp_url"]
    assert settings.database_url == URLS["database_url"]


@pytest.mark.parametrize(
    "bad",
    [
        {"amqp_url": f"amqp://albums:{PASSWORD}@rabbit1:99999999/%2F"},
        {"amqp_url": f"http://albums:{PASSWORD}@rabbit1/%2F"},
        {"rabbitmq_management_password": [PASSWORD]},
        {"max_attempts": PASSWORD},
    ],
)
def test_a_bad_setting_is_refused_without_echoing_its_value(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as refused:
        CommonSettings(_env_file=None, **bad)  # type: ignore[call-arg]
    assert PASSWORD not in str(refused.value)
    assert next(iter(bad)) in str(refused.value)  # it still names the setting


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://u:p@h:5672/%2F", "amqp://u:***@h:5672/%2F"),
        ("amqp://u:p@h1,h2:5673", "amqp://u:***@h1,h2:5673"),
        (
            "postgresql+psycopg://u:p%40x@db/albums?sslmode=require",
            "postgresql+psycopg://u:***@db/albums?sslmode=require",
        ),
        ("sqlite:///var/albums.db", "sqlite:///var/albums.db"),
        ("amqp://h:5672/%2F", "amqp://h:5672/%2F"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
