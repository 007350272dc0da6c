"""The bucket's client is built from the service's settings: AWS keys and region read from a
`.env` file reach boto3, which reads only the process environment itself (issue 13 item 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.api.settings import ApiSettings
from services.uploader.settings import UploaderSettings
from shared.adapters import s3
from shared.config.settings import CommonSettings

SECRET = "dotenv-secret-0123456789"


@pytest.fixture(autouse=True)
def no_aws_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing of AWS's in the environment or the shared files: only what the test gives."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role probe
    monkeypatch.chdir(tmp_path)  # where the settings read `.env` from
    return tmp_path


def credentials(client: Any) -> Any:
    return client._request_signer._credentials  # what botocore signs each request with


@pytest.mark.parametrize("settings_class", [ApiSettings, UploaderSettings])
def test_aws_values_from_the_env_file_reach_the_client(
    settings_class: type[CommonSettings], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        f"AWS_ACCESS_KEY_ID=AKIADOTENV\nAWS_SECRET_ACCESS_KEY={SECRET}\nAWS_REGION=eu-west-3\n"
    )
    settings = settings_class()
    client = s3.make_client(settings)
    found = credentials(client)
    assert found is not None, "boto3 got no credentials from the settings' .env"
    assert (found.access_key, found.secret_key) == ("AKIADOTENV", SECRET)
    assert client.meta.region_name == "eu-west-3"
    assert SECRET not in repr(settings) and SECRET not in str(settings)


def test_aws_default_region_and_a_session_token_are_read_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "AWS_ACCESS_KEY_ID=ASIATEMP\n"
        f"AWS_SECRET_ACCESS_KEY={SECRET}\n"
        "AWS_SESSION_TOKEN=session-token-42\n"
        "AWS_DEFAULT_REGION=ap-south-1\n"
    )
    client = s3.make_client(UploaderSettings())
    assert credentials(client).token == "session-token-42"
    assert client.meta.region_name == "ap-south-1"


def test_without_keys_boto3_finds_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An instance or task role, or the shared files: left to boto3's chain, not overridden.
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = AKIACHAIN\naws_secret_access_key = from-the-chain\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    client = s3.make_client(UploaderSettings())
    assert credentials(client).access_key == "AKIACHAIN"


@pytest.mark.parametrize(
    "given",
    [
        {"aws_access_key_id": "AKIAONLY"},
        {"aws_secret_access_key": SECRET},
        {"aws_session_token": SECRET},
    ],
)
def test_an_incomplete_key_set_is_refused_naming_the_keys(given: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as refused:
        CommonSettings(_env_file=None, **given)  # type: ignore[call-arg, arg-type]
    message = str(refused.value)
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert SECRET not in message
