"""The unit loop's guards (tests/unit/conftest.py) do refuse what they say they refuse, and a
refusal fails the test even when the code under test caught it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from tests.unit.conftest import (
    NetworkInUnitTest,
    ProcessInUnitTest,
    RealWaitInUnitTest,
    Refusals,
)


def test_a_unit_test_cannot_reach_the_broker(refusals: Refusals) -> None:
    with socket.socket() as sock, pytest.raises(NetworkInUnitTest, match="5672"):
        sock.connect(("127.0.0.1", 5672))
    with socket.socket() as sock, pytest.raises(NetworkInUnitTest):
        sock.connect_ex(("127.0.0.1", 5432))
    assert len(refusals.seen) == 2
    refusals.seen.clear()  # checked here: the guard's teardown would fail the test


def test_a_unit_test_cannot_listen_on_a_port(refusals: Refusals) -> None:
    with socket.socket() as sock, pytest.raises(NetworkInUnitTest, match="bound"):
        sock.bind(("127.0.0.1", 0))
    a, b = socket.socketpair()  # a local pair stays allowed
    a.close()
    b.close()
    assert len(refusals.seen) == 1
    refusals.seen.clear()


def test_a_unit_test_cannot_start_a_process(refusals: Refusals) -> None:
    with pytest.raises(ProcessInUnitTest):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    with pytest.raises(ProcessInUnitTest):
        os.system("true")
    assert len(refusals.seen) == 2
    refusals.seen.clear()


def test_a_unit_test_cannot_wait_on_real_time(refusals: Refusals) -> None:
    with pytest.raises(RealWaitInUnitTest):
        time.sleep(1)
    time.sleep(0.001)  # a brief yield stays allowed
    assert len(refusals.seen) == 1
    refusals.seen.clear()


@pytest.mark.real_time
def test_a_test_marked_real_time_may_sleep() -> None:
    started = time.monotonic()
    time.sleep(0.06)
    assert time.monotonic() - started >= 0.06


def test_a_refusal_the_code_caught_still_fails_the_test(refusals: Refusals) -> None:
    """Code that turns any failure into an answer ("Facebook is unreachable") hides the
    connection it tried: the test fails anyway, after it ran (the fixture's `check`)."""
    try:
        with socket.socket() as sock:
            sock.connect(("127.0.0.1", 9))
    except Exception:
        pass
    with pytest.raises(pytest.fail.Exception, match="refused in a unit test: .*connected to"):
        refusals.check()
    refusals.seen.clear()
