"""Guards that keep the unit loop fast and self-contained (issues 9 and 13): a unit test opens
no network connection and listens on no port (a broker, PostgreSQL or an HTTP stand-in belongs
in tests/integration), starts no process, and never sleeps on real time on its own thread (pass
a clock it can move instead; a test that truly needs a real sleep says so with
`@pytest.mark.real_time`). Waits on an Event or a join are not caught: keep them to hundredths
of a second.

Each refusal raises in the code under test, and fails the test afterwards too: code that catches
every exception (a client that turns any failure into "Facebook is unreachable") would
otherwise hide a connection attempt, and its cost, behind a passing test.

The fixtures of tests/conftest.py stay available; these guards apply to every test under here.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
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


class ProcessInUnitTest(AssertionError):
    pass


class Refusals:
    """What the guards refused during one test."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def refuse(self, kind: type[AssertionError], message: str) -> None:
        self.seen.append(message)
        raise kind(message)

    def check(self) -> None:
        """Fail the test that had anything refused."""
        if self.seen:
            pytest.fail("refused in a unit test: " + "; ".join(self.seen), pytrace=False)


@pytest.fixture(autouse=True)
def refusals() -> Iterator[Refusals]:
    """Fails the test after it ran when a guard refused anything, caught or not (a guard's own
    test empties `seen` once it has checked it)."""
    found = Refusals()
    yield found
    found.check()


def _ip(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, refusals: Refusals) -> None:
    """Refuse every IP connection and every IP port bound; local socketpairs and Unix sockets
    stay allowed."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_bind = socket.socket.bind

    def refuse(sock: socket.socket, what: str, address: Any) -> None:
        # Closed here: a client that catches only OSError would leave it to the garbage
        # collector, whose ResourceWarning fails some later test (filterwarnings).
        sock.close()
        refusals.refuse(
            NetworkInUnitTest,
            f"a unit test {what} {address!r}: use a fake, or move the test to tests/integration",
        )

    def connect(sock: socket.socket, address: Any) -> None:
        if _ip(sock):
            refuse(sock, "connected to", address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if _ip(sock):
            refuse(sock, "connected to", address)
        return real_connect_ex(sock, address)

    def bind(sock: socket.socket, address: Any) -> None:
        if _ip(sock):
            refuse(sock, "bound", address)
        real_bind(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "bind", bind)


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch, refusals: Refusals) -> None:
    """Refuse starting a process: subprocess (run, Popen, check_output), fork, spawn, system.
    A test that runs a command (make, a child Python) belongs in tests/integration."""

    def refuse(*args: Any, **_kwargs: Any) -> Any:
        refusals.refuse(
            ProcessInUnitTest,
            f"a unit test started a process {args[1:2]!r}: move it to tests/integration",
        )

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        monkeypatch.setattr(os, name, lambda *args, name=name, **kw: refuse(None, name))


@pytest.fixture(autouse=True)
def no_real_waits(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, refusals: Refusals
) -> Iterator[None]:
    if request.node.get_closest_marker("real_time"):
        yield
        return
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        # Only the test's own thread: a daemon thread sleeping (a lease renewer) delays nobody.
        if seconds > LONGEST_SLEEP_S and threading.current_thread() is threading.main_thread():
            refusals.refuse(
                RealWaitInUnitTest, f"a unit test slept {seconds} s: pass a clock it can move"
            )
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    yield


@pytest.fixture(autouse=True)
def stores_handed_back() -> Iterator[None]:
    """The session's stores go back to the pool after each test (tests/unit/stores.py)."""
    # Imported here: the pytest-xdist controller loads this file and needs no store.
    from tests.unit import stores

    yield
    stores.hand_back()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What the imports and the collection made (some 300,000 objects: modules, classes, test
    items) lives until the run ends: moved out of the garbage collector's sight, so neither its
    full collections during the tests nor pytest's two at the end walk it again."""
    gc.freeze()
