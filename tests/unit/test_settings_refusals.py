"""A bad setting stops a process at start with `settings refused:` and the setting's name and
rule, never a traceback or a silent fallback: every port is a TCP port (0 only where it means
"off"), DATABASE_URL names a store we can open, RETRY_DELAYS says what it must be."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from services.api import __main__ as api_main
from services.api.settings import ApiSettings
from services.notifier import __main__ as notifier_main
from services.notifier.settings import NotifierSettings
from services.uploader import __main__ as uploader_main
from services.uploader.settings import UploaderSettings
from shared.config.settings import CommonSettings

SETTINGS = [CommonSettings, ApiSettings, UploaderSettings, NotifierSettings]

#: Every port setting, and whether 0 is a documented "off" (README, Settings).
PORTS: dict[str, bool] = {
    "api_port": False,
    "api_metrics_port": True,
    "uploader_health_port": True,
    "uploader_metrics_port": True,
    "notifier_health_port": True,
    "notifier_metrics_port": True,
    "smtp_port": False,
}

#: Each service's command and its entry point, imported here: urllib3 probes IPv6 by binding
#: a port when first imported, which the unit guards would refuse inside a test.
SERVICES: dict[str, Callable[[], None]] = {
    "services.api": api_main.main,
    "services.uploader": uploader_main.main,
    "services.notifier": notifier_main.main,
}


def _make(settings_class: type[CommonSettings], **values: Any) -> CommonSettings:
    return settings_class(_env_file=None, **values)  # type: ignore[call-arg]


def _port_settings() -> list[tuple[type[CommonSettings], str]]:
    return [(cls, name) for cls in SETTINGS for name in cls.model_fields if name.endswith("_port")]


def test_every_port_setting_is_listed_here() -> None:
    # A new port setting must say whether 0 turns it off, and be checked below.
    assert {name for _, name in _port_settings()} == set(PORTS)


@pytest.mark.parametrize(("settings_class", "name"), _port_settings())
@pytest.mark.parametrize("value", [65536, 99999, -1])
def test_a_port_out_of_range_is_refused(
    settings_class: type[CommonSettings], name: str, value: int
) -> None:
    with pytest.raises(ValidationError) as refused:
        _make(settings_class, **{name: value})
    assert name in str(refused.value)


@pytest.mark.parametrize(("settings_class", "name"), _port_settings())
def test_port_0_is_off_only_where_documented(
    settings_class: type[CommonSettings], name: str
) -> None:
    if PORTS[name]:
        assert getattr(_make(settings_class, **{name: 0}), name) == 0
        return
    with pytest.raises(ValidationError, match=f"{name}\n.*greater than or equal to 1"):
        _make(settings_class, **{name: 0})


@pytest.mark.parametrize(("settings_class", "name"), _port_settings())
def test_the_highest_port_is_taken(settings_class: type[CommonSettings], name: str) -> None:
    assert getattr(_make(settings_class, **{name: 65535}), name) == 65535


@pytest.mark.parametrize(
    "url",
    ["foo://bar", "postgresql+nodriver://u:pw@db/albums", "mysql://u:pw@db/albums", "not a url"],
)
def test_a_database_url_we_cannot_open_is_refused_without_its_value(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _make(CommonSettings, database_url=url)
    said = str(refused.value)
    assert "database_url" in said and "sqlite:///" in said and "postgresql+psycopg://" in said
    assert "pw" not in said and "nodriver" not in said


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///var/albums.db",
        "sqlite:////tmp/albums.db",
        "postgresql+psycopg://albums:pw@db:5432/albums?sslmode=require",
    ],
)
def test_the_stores_we_open_are_taken(url: str) -> None:
    assert _make(CommonSettings, database_url=url).database_url == url


@pytest.mark.parametrize("delays", ["abc", "5,abc,30", "1.5", "5;30"])
def test_retry_delays_that_are_not_whole_seconds_say_what_they_must_be(delays: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _make(CommonSettings, retry_delays=delays)
    said = str(refused.value)
    assert "RETRY_DELAYS" in said and "whole seconds" in said and "comma" in said
    assert "invalid literal" not in said


def test_retry_delays_with_spaces_are_read() -> None:
    assert _make(CommonSettings, retry_delays=" 5, 30 ,120").retry_delays == (5, 30, 120)


@pytest.mark.parametrize("module", sorted(SERVICES))
@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("DATABASE_URL", "foo://bar", "database_url"),
        ("RETRY_DELAYS", "abc", "RETRY_DELAYS must be whole seconds"),
    ],
)
def test_each_service_refuses_a_bad_setting_in_one_message(
    module: str,
    variable: str,
    value: str,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(sys, "argv", [module])
    with pytest.raises(SystemExit) as exited:
        SERVICES[module]()
    assert str(exited.value.code).startswith("settings refused: "), exited.value.code
    assert said in str(exited.value.code)


@pytest.mark.parametrize(
    ("module", "variable"),
    [
        ("services.api", "API_PORT"),
        ("services.uploader", "UPLOADER_HEALTH_PORT"),
        ("services.notifier", "SMTP_PORT"),
    ],
)
def test_each_service_refuses_a_port_out_of_range(
    module: str, variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, "99999")
    monkeypatch.setattr(sys, "argv", [module])
    with pytest.raises(SystemExit) as exited:
        SERVICES[module]()
    assert str(exited.value.code).startswith("settings refused: "), exited.value.code
    assert "less than or equal to 65535" in str(exited.value.code)


def test_an_unknown_log_level_is_refused() -> None:
    with pytest.raises(ValidationError, match="LOG_LEVEL must be DEBUG, INFO"):
        _make(CommonSettings, log_level="LOUD")
    assert _make(CommonSettings, log_level="debug").log_level == "debug"


def test_a_token_key_that_is_not_a_fernet_key_is_refused_without_it() -> None:
    with pytest.raises(ValidationError) as refused:
        _make(CommonSettings, token_encryption_keys="not-a-key-at-all")
    assert "must be a Fernet key" in str(refused.value)
    assert "not-a-key-at-all" not in str(refused.value)
