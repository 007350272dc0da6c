"""dev/ports.py: the servers' ports are ones no outgoing connection can take, and two runs on
the machine never get the same one (docs/ports.md)."""

from __future__ import annotations

import subprocess
import sys

from dev import ports

HOLDER = """
import sys
from dev.ports import free_port
print(" ".join(str(free_port()) for _ in range(200)), flush=True)
sys.stdin.read()
"""


def test_a_port_is_outside_the_ephemeral_range() -> None:
    taken = [ports.free_port() for _ in range(50)]
    try:
        assert not [port for port in taken if port in ports.ephemeral_range()]
        assert len(set(taken)) == len(taken)
    finally:
        for port in taken:
            ports.release(port)


def test_another_process_never_gets_a_port_this_one_holds() -> None:
    mine = {ports.free_port() for _ in range(200)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        theirs = {int(port) for port in holder.stdout.readline().split()}
        assert len(theirs) == 200
        assert not mine & theirs
    finally:
        holder.communicate("")
        for port in mine:
            ports.release(port)


def test_a_released_port_can_be_reserved_again() -> None:
    port = ports.free_port()
    assert not ports._lock(port)  # held: a second lock on it fails, even from this process
    ports.release(port)
    assert ports._lock(port)
    ports.release(port)
