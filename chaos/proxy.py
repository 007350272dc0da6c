"""A small TCP proxy that can be cut: the harness's stand-in for a dependency going away.

Between a service and its dependency (S3, the store, SMTP). `cut()` resets every open
connection and closes the listening port (a connection is refused, as with a stopped server);
`restore()` listens on the same port again. `pause()` is a partition: connections stay open
and new ones are accepted, but nothing passes either way until `resume()`, and nothing is reset.
(This proxy's own kernel still acknowledges what the client sends, so the client's TCP
keepalives and user timeout see a live peer; a connect timeout and the server's own timeouts
are what end the wait.) `slow(bytes_per_s)` throttles what comes back from the dependency (a
slow bucket: a download long enough to crash in the middle of).
Threads, not asyncio: a handful of connections.
"""

from __future__ import annotations

import functools
import socket
import struct
import threading
import time

from dev.ports import free_port

_CHUNK = 64 * 1024
_SLOW_CHUNK = 4 * 1024


class Proxy:
    def __init__(self, upstream_port: int, name: str) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        #: Bytes per second from upstream to the client; None is full speed.
        self.rate: float | None = None
        #: Cleared while paused: what arrives is held, neither sent on nor refused.
        self._flowing = threading.Event()
        self._flowing.set()

    def start(self) -> None:
        self._listen()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        if self._listener is None:
            self._listen()

    stop = cut

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def slow(self, bytes_per_s: float | None) -> None:
        self.rate = bytes_per_s

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:  # the port was ours a moment ago; a TIME_WAIT may linger briefly
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(
            target=self._accept, args=(listener,), daemon=True, name=f"proxy-{self.name}"
        ).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while we connected
                    _reset(client)
                    _reset(upstream)
                    continue
                self._open.update((client, upstream))
            done = threading.Barrier(2, action=functools.partial(self._close, client, upstream))
            for src, dst, limited in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(src, dst, done, limited), daemon=True
                ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, done: threading.Barrier, limited: bool
    ) -> None:
        try:
            while data := src.recv(_SLOW_CHUNK if limited and self.rate else _CHUNK):
                self._flowing.wait()
                dst.sendall(data)
                if limited and self.rate:
                    time.sleep(len(data) / self.rate)
            self._flowing.wait()  # nor does an end pass a partition
            dst.shutdown(socket.SHUT_WR)  # pass the half-close on, as the peer meant it
        except OSError:
            _reset(dst)
            _reset(src)
        try:
            done.wait()  # the last direction to finish closes both sockets
        except threading.BrokenBarrierError:
            pass

    def _close(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(sockets)
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass


def _reset(sock: socket.socket) -> None:
    """Break the connection for both peers now.

    close() alone is not enough: another thread blocked in recv() on the socket keeps it
    alive, no RST goes out, and both peers wait forever (a PostgreSQL backend idle in its
    transaction, holding its row locks). shutdown() wakes that thread; SO_LINGER 0 makes the
    close send RST rather than a clean end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
