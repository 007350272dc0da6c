"""A method a route does not take is a 405 that names the ones it does (RFC 9110, 15.5.6: the
`Allow` header is required), on the JSON API and the pages alike. Found by the fuzzer
(`make security`, check unsupported_method)."""

from __future__ import annotations

import pytest

from tests.unit.test_web import make_env


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/api/albums", {"GET", "POST"}),
        ("DELETE", "/api/albums/0", {"GET"}),
        ("PUT", "/api/albums/0/retry", {"POST"}),
        ("PATCH", "/healthz", {"GET"}),
        ("DELETE", "/albums", {"GET"}),
    ],
)
def test_a_405_says_which_methods_are_allowed(method: str, path: str, allowed: set[str]) -> None:
    client = make_env().app.test_client()
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert allowed <= {m.strip() for m in response.headers.get("Allow", "").split(",")}
