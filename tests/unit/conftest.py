"""Guards that keep the unit loop fast and self-contained (issue 9): a unit test opens no
network connection (a broker, PostgreSQL or an HTTP stand-in belongs in tests/integration) and
never sleeps on real time on its own thread (pass a clock it can move instead; a test that
truly needs a real sleep says so with `@pytest.mark.real_time`). Waits on an Event or a join
are not caught: keep them to hundredths of a second.

The fixtures of tests/conftest.py stay available; these two apply to every test under here.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

#: The longest real sleep a unit test may take; the code under test may still yield briefly.
LONGEST_SLEEP_S = 0.05


class NetworkInUnitTest(AssertionError):
    pass


class RealWaitInUnitTest(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every IP connection; local socketpairs and Unix sockets stay allowed."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Closed here: a client that catches only OSError would leave it to the garbage
            # collector, whose ResourceWarning fails some later test (filterwarnings).
            sock.close()
            raise NetworkInUnitTest(
                f"a unit test connected to {address!r}: use a fake, or "
                "move the test to tests/integration"
            )

    def connect(sock: socket.socket, address: Any) -> None:
        refuse(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        refuse(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(autouse=True)
def no_real_waits(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.get_closest_marker("real_time"):
        yield
        return
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        # Only the test's own thread: a daemon thread sleeping (a lease renewer) delays nobody.
        if seconds > LONGEST_SLEEP_S and threading.current_thread() is threading.main_thread():
            raise RealWaitInUnitTest(f"a unit test slept {seconds} s: pass a clock it can move")
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    yield
