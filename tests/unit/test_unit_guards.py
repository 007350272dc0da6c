"""The unit loop's guards (tests/unit/conftest.py) do refuse what they say they refuse."""

from __future__ import annotations

import socket
import time

import pytest

from tests.unit.conftest import NetworkInUnitTest, RealWaitInUnitTest


def test_a_unit_test_cannot_reach_the_broker() -> None:
    with socket.socket() as sock, pytest.raises(NetworkInUnitTest, match="5672"):
        sock.connect(("127.0.0.1", 5672))
    with socket.socket() as sock, pytest.raises(NetworkInUnitTest):
        sock.connect_ex(("127.0.0.1", 5432))


def test_a_unit_test_cannot_wait_on_real_time() -> None:
    with pytest.raises(RealWaitInUnitTest):
        time.sleep(1)
    time.sleep(0.001)  # a brief yield stays allowed


@pytest.mark.real_time
def test_a_test_marked_real_time_may_sleep() -> None:
    started = time.monotonic()
    time.sleep(0.06)
    assert time.monotonic() - started >= 0.06
