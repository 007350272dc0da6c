"""What `make run` prints once it runs: where the API, the management UI (and as whom), the
metrics, the health endpoints and the operator's dead-letter desk are."""

from pydantic import SecretStr

from dev.seed import banner
from services.api.settings import ApiSettings


def test_the_banner_says_where_everything_an_operator_opens_is() -> None:
    settings = ApiSettings(_env_file=None,  # type: ignore[call-arg]
                           api_host="127.0.0.1", api_port=8000, amqp_url="amqp://guest:guest@127.0.0.1:5672/%2F",
                           api_secret_key=SecretStr("k"))
    text = banner(settings, {"uploader": 8001, "notifier": 8002}, "demo@example.com", "tok",
                  ["a.png"], {"api": 9101, "uploader": 9102, "notifier": 9103})
    assert "RabbitMQ UI:    http://127.0.0.1:15672   (user guest, AMQP_URL's password)" in text
    assert "Dead letters:   http://127.0.0.1:8000/operator/dead-letters" in text
    # /metrics has ports of its own (README: Metrics and alerts), never the API's or health's.
    assert ("Metrics:        http://127.0.0.1:9101/metrics  http://127.0.0.1:9102/metrics  "
            "http://127.0.0.1:9103/metrics  http://127.0.0.1:15692/metrics") in text
    assert "8000/metrics" not in text and "8001/metrics" not in text
    assert "http://127.0.0.1:8001/readyz" in text and "http://127.0.0.1:8000/readyz" in text
    assert "guest" in text and "tok" in text
