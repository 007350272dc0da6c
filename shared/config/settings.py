"""Settings every service reads: the broker, the store, the bucket and the retry schedule.

Each service subclasses `CommonSettings` with its own fields, so a setting has one name and one
default everywhere, and nothing is repeated across services.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from shared.broker.amqp_urls import split_urls
from shared.config.redaction import redact_url
from shared.config.token_cipher import TokenCipher
from shared.contracts import topology

#: Settings whose value is a URL that may carry a password: printed with it redacted. They
#: stay plain strings (not SecretStr) because pika and SQLAlchemy take them as they are, in
#: every service, and their host and port are what an operator needs to see.
_URLS_WITH_PASSWORDS = frozenset({"amqp_url", "database_url", "rabbitmq_management_url"})

#: A TCP port to serve on or connect to. Unchecked, the socket layer takes a number above
#: 65535 modulo 65536 (API_PORT=99999 served on 34463) and 0 as "any free port".
Port = Annotated[int, Field(ge=1, le=65535)]
#: A port whose 0 turns its server off (each such setting documents it).
PortOrOff = Annotated[int, Field(ge=0, le=65535)]

#: The stores shared/store/engine.py sets up; any other would fail at its first connection.
_STORE_BACKENDS = frozenset({"sqlite", "postgresql"})
_DATABASE_URL_RULE = (
    "DATABASE_URL must be sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST[:PORT]/DATABASE"
)

_Settings = TypeVar("_Settings", bound=BaseSettings)


def load(settings_class: type[_Settings]) -> _Settings:
    """A process's settings, or its exit with `settings refused:` and each refused setting's
    name and rule (never its value): a bad setting stops it at start, without a traceback."""
    try:
        return settings_class()
    except ValidationError as exc:
        raise SystemExit(f"settings refused: {exc}") from None


class CommonSettings(BaseSettings):
    # A refused value is not echoed back: it may be a password, or a URL holding one.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    #: What kind of deployment this is, the same for every process. `production` refuses to
    #: start with a secret left to its local default (each service lists its own:
    #: `production_problems`); `local` (`make run`, the tests) makes them up under var/.
    app_env: Literal["local", "production"] = "local"

    #: One broker node, or several separated by commas (a cluster): see
    #: `shared/broker/amqp_urls.py`.
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    database_url: str = "sqlite:///var/albums.db"
    #: Where the uploader's and the notifier's /healthz and /readyz listen (their ports are
    #: UPLOADER_HEALTH_PORT, NOTIFIER_HEALTH_PORT); 0.0.0.0 in a container.
    health_host: str = "127.0.0.1"
    s3_endpoint_url: str | None = "http://127.0.0.1:9000"
    s3_bucket: str = "albums"
    #: The bucket's keys and region, handed to boto3 from here (shared/adapters/s3.py): boto3 reads
    #: only the process environment, and these come from `.env` too. Both keys or neither; none
    #: (and no region) leaves boto3 its own chain, as an instance or task role needs.
    aws_access_key_id: str = ""
    aws_secret_access_key: SecretStr = SecretStr("")
    #: Temporary (STS) credentials' third part, beside the two keys.
    aws_session_token: SecretStr = SecretStr("")
    #: AWS_REGION, else AWS_DEFAULT_REGION (boto3's name for it).
    aws_region: str = Field(
        default="", validation_alias=AliasChoices("aws_region", "aws_default_region")
    )
    log_level: str = "INFO"
    #: `json` (one object per line) or `text`; unset: text on a terminal, JSON otherwise.
    log_format: Literal["json", "text"] | None = None
    #: The address each service's /metrics listens on (its port is the service's own
    #: *_METRICS_PORT, 0 = no /metrics). Loopback by default: the figures are for the operator's
    #: Prometheus, not for the users.
    metrics_host: str = "127.0.0.1"
    #: Seconds a failed image waits in each retry tier, in order; one TTL queue per tier.
    retry_delays: Annotated[tuple[int, ...], NoDecode] = (5, 30, 120, 600, 3600)
    #: Attempts an image gets before it is dead-lettered (the first try counts as one).
    max_attempts: int = Field(default=6, ge=1)
    #: Redeliveries after consumer crashes before the broker dead-letters a message (a broker
    #: policy on the work queues, so it can change: docs/broker-policies.md).
    delivery_limit: int = Field(default=20, ge=1)
    #: Dead letters a dead-letter queue holds before it refuses more (a policy too).
    dead_letter_max_length: int = Field(default=1_000_000, ge=1)
    #: RabbitMQ's management HTTP API, through which the policies are applied. Empty: the
    #: AMQP_URL's host on port 15672 (https and 15671 for amqps), its user and password.
    rabbitmq_management_url: str = ""
    rabbitmq_management_user: str = ""
    rabbitmq_management_password: SecretStr = SecretStr("")
    graph_api_url: str = "http://127.0.0.1:8010"
    graph_api_version: str = "v24.0"
    #: The single-tenant fallback: albums of users with no connected Page go to this Page,
    #: only when both are set (a one-tenant install). Empty: each user connects their own.
    facebook_page_id: str = ""
    facebook_page_token: SecretStr = SecretStr("")
    #: Fernet keys sealing the connected Pages' tokens, comma-separated: the first encrypts,
    #: all decrypt (rotation). Empty: a local key generated once under var/ (never production).
    token_encryption_keys: SecretStr = SecretStr("")

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls_readable(cls, value: str) -> str:
        # A typo in the node list fails at start with its reason, not at the first publish.
        split_urls(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        # Otherwise logging's own ValueError, a traceback, once the process sets up its log.
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @field_validator("token_encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        # A bad key refused at start by every service, not at the first Page token sealed
        # (the API) or by a traceback (the uploader). TokenCipher's reason names no key.
        if value.get_secret_value().strip():
            TokenCipher(value.get_secret_value())
        return value

    @field_validator("database_url")
    @classmethod
    def _store_we_can_open(cls, value: str) -> str:
        # Refused here, not by a traceback at the first connection. The reason names no part
        # of the value: it may hold a password.
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(f"{_DATABASE_URL_RULE} (this is not a URL)") from None
        if url.get_backend_name() not in _STORE_BACKENDS:
            raise ValueError(f"{_DATABASE_URL_RULE} (no other database is supported)")
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError(f"{_DATABASE_URL_RULE} (its port must be 1 to 65535)")
        try:
            url.get_dialect().import_dbapi()
        except (NoSuchModuleError, ImportError):
            raise ValueError(f"{_DATABASE_URL_RULE} (its driver is not installed)") from None
        return value

    @field_validator("s3_endpoint_url", mode="before")
    @classmethod
    def _empty_endpoint_is_aws(cls, value: object) -> object:
        # S3_ENDPOINT_URL= (empty) means the real AWS endpoint, as boto3 picks it.
        return None if value == "" else value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _parse_delays(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise ValueError(
                "RETRY_DELAYS must be whole seconds separated by commas, e.g. 5,30,120,600,3600"
            )
        return tuple(int(part) for part in parts)

    @field_validator("retry_delays")
    @classmethod
    def _delays_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("RETRY_DELAYS needs at least one positive number of seconds")
        if max(value) > topology.MAX_RETRY_DELAY_S:
            # Tier names hold five digits (they sort), and the longest twin is x1.25.
            raise ValueError(
                f"RETRY_DELAYS: each delay is at most {topology.MAX_RETRY_DELAY_S}"
                f" seconds (got {max(value)})"
            )
        return value

    @model_validator(mode="after")
    def _management_from_amqp_url(self) -> Self:
        # A cluster's nodes share users and policies: the first node's API serves them all.
        parts = urlsplit(self.first_amqp_url)
        if not self.rabbitmq_management_url:
            host = parts.hostname or "127.0.0.1"
            host = f"[{host}]" if ":" in host else host
            scheme, port = ("https", 15671) if parts.scheme == "amqps" else ("http", 15672)
            self.rabbitmq_management_url = f"{scheme}://{host}:{port}"
        if not self.rabbitmq_management_user:
            self.rabbitmq_management_user = unquote(parts.username or "guest")
        if not self.rabbitmq_management_password.get_secret_value():
            self.rabbitmq_management_password = SecretStr(unquote(parts.password or "guest"))
        return self

    @model_validator(mode="after")
    def _aws_keys_paired(self) -> Self:
        # Half a pair would sign with the other half of whatever boto3's chain finds.
        key_id, secret = self.aws_access_key_id, self.aws_secret_access_key.get_secret_value()
        if bool(key_id) != bool(secret):
            raise ValueError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both or neither")
        if self.aws_session_token.get_secret_value() and not key_id:
            raise ValueError("AWS_SESSION_TOKEN needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        return self

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in _URLS_WITH_PASSWORDS and value else value

    def production_problems(self) -> list[str]:
        """What this service may not run in production with, each naming its setting."""
        return []

    def token_keys_problems(self) -> list[str]:
        """For the services that seal or open Page tokens: a key must be set, not made up."""
        if self.token_encryption_keys.get_secret_value().strip():
            return []
        return [
            "TOKEN_ENCRYPTION_KEYS must be set (the local key under var/ is for local runs only)"
        ]

    @model_validator(mode="after")
    def _safe_for_production(self) -> Self:
        # At construction, so no process of a production deployment starts without them.
        problems = self.production_problems() if self.app_env == "production" else []
        if problems:
            raise ValueError("APP_ENV=production refuses to start: " + "; ".join(problems))
        return self

    @property
    def single_tenant_page(self) -> tuple[str, str] | None:
        """FACEBOOK_PAGE_ID and its token, when both are set: the fallback Page."""
        token = self.facebook_page_token.get_secret_value()
        return (self.facebook_page_id, token) if self.facebook_page_id and token else None

    @property
    def first_amqp_url(self) -> str:
        """The first node's full URL (AMQP_URL may list a cluster's nodes)."""
        return split_urls(self.amqp_url)[0]

    @property
    def amqp_vhost(self) -> str:
        """The vhost AMQP_URL names (pika's reading: no path or an empty one is "/")."""
        path = urlsplit(self.first_amqp_url).path
        return unquote(path[1:]) if len(path) > 1 else "/"
