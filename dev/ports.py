"""Ports for the servers the tests, the bench and the chaos harness start, and a check that
something listens.

A port found free by binding port 0 is an ephemeral port: the kernel may hand the same port to
any outgoing connection (or another bind to port 0) before our server binds it, and the server
then fails with "Address already in use" (docs/ports.md). So `free_port` takes ports from a pool
the kernel never hands out (below `ip_local_port_range`), and reserves each one against the
other runs on the machine with a lock file held until `release` or this process's exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

#: The pool starts here: above the well-known and most fixed service ports.
POOL_START = 20000
#: Where the runs of every checkout on the machine take their locks (one empty file a port).
LOCKS = Path(tempfile.gettempdir()) / "album-publisher-ports"
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")

#: This process's reservations: port -> its open, locked file.
_held: dict[int, int] = {}
_guard = threading.Lock()  # a cluster's nodes start from threads


def ephemeral_range() -> range:
    """The ports the kernel hands out on its own (Linux's default: 32768-60999)."""
    try:
        low, high = _RANGE_FILE.read_text().split()
    except (OSError, ValueError):
        low, high = "32768", "60999"
    return range(int(low), int(high) + 1)


def pool() -> range:
    pool = range(POOL_START, ephemeral_range().start)
    if len(pool) < 100:
        raise RuntimeError(
            f"ip_local_port_range starts at {pool.stop}: too few ports below it"
            f" from {POOL_START} for the servers (raise its low end)"
        )
    return pool


def free_port(host: str = "127.0.0.1") -> int:
    """A port of this process's own until `release(port)` or its exit: outside the ephemeral
    range, so no outgoing connection takes it, and locked, so no other run on the machine
    hands it out; free on `host` right now (nothing else listens on it or holds it)."""
    ports = list(pool())
    with _guard:
        for port in random.sample(ports, len(ports)):
            if port in _held or not _lock(port):
                continue
            if _bindable(host, port):
                return port
            _unlock(port)
    raise RuntimeError(f"no free port left in {ports[0]}-{ports[-1]}")


def release(port: int) -> None:
    """Hand a port back to the pool (its server has stopped)."""
    with _guard:
        _unlock(port)


def _unlock(port: int) -> None:
    fd = _held.pop(port, None)
    if fd is not None:
        os.close(fd)  # closing the file drops its lock


def _lock(port: int) -> bool:
    LOCKS.mkdir(exist_ok=True)
    fd = os.open(LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held[port] = fd
    return True


def _bindable(host: str, port: int) -> bool:
    """Without SO_REUSEADDR: a port in TIME_WAIT counts as taken too (a conservative pick)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        with contextlib.suppress(OSError):
            sock.bind((host, port))
            return True
    return False


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
