"""Issue 15 item 1: a port the harness picks must not be one an outgoing connection can take
between the pick and the server's bind (a `make chaos` row failed with "Address already in
use" on the API's port that way)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.harness import ProcessDied
from dev.rabbit_node import Node
from tests.e2e.conftest import e2e_system


def _ephemeral_range() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    """Somewhere for the outgoing connections to go."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def take_as_the_kernel_would(port: int, listener: socket.socket) -> socket.socket | None:
    """An outgoing connection on local port `port`, if `port` is one the kernel may hand an
    outgoing connection (or a bind to port 0) as its ephemeral port; else None: it never does."""
    if port not in _ephemeral_range():
        return None
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.connect(listener.getsockname())
    return sock


def test_a_port_taken_by_an_outgoing_connection_does_not_stop_the_system(
    tmp_path: Path, listener: socket.socket
) -> None:
    system = e2e_system(tmp_path, "amqp://guest:guest@127.0.0.1:1/%2F")
    # The worst moment: every port taken right after the harness chose it, before its server.
    taken = [take_as_the_kernel_would(port, listener) for port in system.ports.values()]
    try:
        system.start_all()
    finally:
        system.stop_all()
        for sock in taken:
            if sock is not None:
                sock.close()


def test_a_process_that_cannot_bind_fails_the_start_at_once_with_its_reason(tmp_path: Path) -> None:
    """A port bound by number outside every run (the one way left to lose one) is not a wait
    until a timeout: the harness names the process and shows its log."""
    system = e2e_system(tmp_path, "amqp://guest:guest@127.0.0.1:1/%2F")
    try:
        # Bound, not listening (as an outgoing connection's port is): a listening socket would
        # answer the harness's look for the stand-in before the stand-in's own bind failed.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", system.ports["graph"]))
            with pytest.raises(ProcessDied, match="Address already in use"):
                system.start_stand_ins(timeout=600)
    finally:
        system.stop_all()


@pytest.mark.skipif(
    not list(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin")),
    reason="RabbitMQ is not installed here",
)
def test_a_node_whose_port_is_taken_starts_on_new_ones(tmp_path: Path) -> None:
    node = Node(tmp_path / "node", plugins=())
    taken = node.amqp_port
    try:
        with socket.create_server(("127.0.0.1", taken)):
            node.start()
        assert node.amqp_port != taken
        connection = node.accepts()
        assert connection is not None
        connection.close()
    finally:
        node.destroy()
