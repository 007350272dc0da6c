"""`make security`: the whole system as processes, as tests/e2e runs it (the same harness), on a
vhost and a PostgreSQL database of this session's own, with one signed-up user to fuzz as.

PostgreSQL rather than SQLite: it refuses more of what a fuzzer sends (a NUL byte in a text
parameter), so it finds more. Rate limits, where the API has them, are raised in this run's
environment by FUZZ_ENV: the fuzzer sends far more requests than one user would."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import System, e2e_system
from tests.e2e.conftest import e2e_amqp_url as e2e_amqp_url  # noqa: F401 - the fixture

#: Settings of the fuzz run's services (documented in the README) over the e2e defaults.
FUZZ_ENV: dict[str, str] = {}


@dataclass
class FuzzTarget:
    system: System
    user: dict[str, Any]

    @property
    def schema_url(self) -> str:
        return f"{self.system.api_url}/api/openapi.json"


@pytest.fixture(scope="session")
def fuzz_target(
    tmp_path_factory: pytest.TempPathFactory,
    e2e_amqp_url: str,  # noqa: F811
    postgres_url: str,
) -> Iterator[FuzzTarget]:
    system = e2e_system(tmp_path_factory.mktemp("security"), e2e_amqp_url)
    system.env.update(DATABASE_URL=postgres_url, **FUZZ_ENV)
    try:
        system.start_all()
        user = system.create_user("fuzz@example.com")
        for name in ("trip/a.png", "trip/b.png", "c.jpg"):
            system.put(f"{user['prefix']}{name}", b"\x89PNG\r\n\x1a\n")
        yield FuzzTarget(system, user)
    finally:
        system.stop_all()
        for name in system.processes:
            if "Traceback" in system.logs(name):
                print(f"--- {name}.log ---\n{system.logs(name)[-4000:]}")
