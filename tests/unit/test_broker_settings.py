"""Where the management API is, derived from AMQP_URL unless set."""

from pydantic import SecretStr

from shared.config.settings import CommonSettings


def test_the_management_api_is_derived_from_the_amqp_url() -> None:
    s = CommonSettings(amqp_url="amqp://al%40bums:p%2Fss@rabbitmq:5672/my%2Fvhost")
    assert s.rabbitmq_management_url == "http://rabbitmq:15672"
    assert s.rabbitmq_management_user == "al@bums"
    assert s.rabbitmq_management_password.get_secret_value() == "p/ss"
    assert "p/ss" not in repr(s)
    assert s.amqp_vhost == "my/vhost"


def test_tls_and_defaults() -> None:
    assert (
        CommonSettings(amqp_url="amqps://u:p@mq.example:5671/%2F").rabbitmq_management_url
        == "https://mq.example:15671"
    )
    s = CommonSettings(amqp_url="amqp://127.0.0.1")
    assert (s.rabbitmq_management_user, s.amqp_vhost) == ("guest", "/")


def test_explicit_management_settings_win() -> None:
    s = CommonSettings(
        amqp_url="amqp://app:secret@rabbitmq:5672/%2F",
        rabbitmq_management_url="http://admin.internal:8080",
        rabbitmq_management_user="ops",
        rabbitmq_management_password=SecretStr("ops-secret"),
    )
    assert (s.rabbitmq_management_url, s.rabbitmq_management_user) == (
        "http://admin.internal:8080",
        "ops",
    )
    assert s.rabbitmq_management_password.get_secret_value() == "ops-secret"
