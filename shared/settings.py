"""Settings every service reads: the broker, the store, the bucket and the retry schedule.

Each service subclasses `CommonSettings` with its own fields, so a setting has one name and one
default everywhere, and nothing is repeated across services.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.amqp_urls import split_urls


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    #: One broker node, or several separated by commas (a cluster): see `shared/amqp_urls.py`.
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    database_url: str = "sqlite:///var/albums.db"
    s3_endpoint_url: str | None = "http://127.0.0.1:9000"
    s3_bucket: str = "albums"
    # boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION itself.
    log_level: str = "INFO"
    #: Seconds a failed image waits in each retry tier, in order; one TTL queue per tier.
    retry_delays: Annotated[tuple[int, ...], NoDecode] = (5, 30, 120, 600, 3600)
    #: Attempts an image gets before it is dead-lettered (the first try counts as one).
    max_attempts: int = Field(default=6, ge=1)
    #: Redeliveries after consumer crashes before the broker dead-letters a message.
    delivery_limit: int = Field(default=20, ge=1)

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls_readable(cls, value: str) -> str:
        # A typo in the node list fails at start with its reason, not at the first publish.
        split_urls(value)
        return value

    @field_validator("s3_endpoint_url", mode="before")
    @classmethod
    def _empty_endpoint_is_aws(cls, value: object) -> object:
        # S3_ENDPOINT_URL= (empty) means the real AWS endpoint, as boto3 picks it.
        return None if value == "" else value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _parse_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("retry_delays")
    @classmethod
    def _delays_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("RETRY_DELAYS needs at least one positive number of seconds")
        return value
