"""A small HTTP server for the consumers (uploader, notifier): GET /healthz (liveness: the
process answers) and GET /readyz (its readiness checks, `shared.observability.readiness`), on a port
of its own (UPLOADER_HEALTH_PORT, NOTIFIER_HEALTH_PORT) in a daemon thread.

HEAD answers as GET without the body; any other method is a 405 naming them in `Allow`, as the
API's routes do (http.server's own answer, 501, would read as a failing service to a probe)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.observability.readiness import Check, readiness_body

log = logging.getLogger(__name__)

#: The methods the probes may use; every other one is a 405 that names these.
ALLOWED = ("GET", "HEAD")
#: The most of a refused request's body read (and dropped) before answering: closing with
#: unread bytes makes the kernel reset the connection, and the client may lose the 405.
_DRAIN_BYTES = 64 * 1024


def serve(host: str, port: int, checks: Mapping[str, Check]) -> ThreadingHTTPServer | None:
    """Start serving in a daemon thread; the caller may `shutdown()` it (a process's exit
    ends it anyway). None, logged, if the port cannot be bound: the service's work matters more
    than its probe, and a probe that finds no server says so loudly enough."""

    class Handler(BaseHTTPRequestHandler):
        #: Seconds a client may take to send its request: a stalled one holds no thread for good.
        timeout = 10

        def parse_request(self) -> bool:
            # Every method passes here, known to http.server or not: refuse those we do not take.
            if not super().parse_request():
                return False
            if self.command in ALLOWED:
                return True
            self._drain_body()
            self._answer(
                405,
                {"error": f"{self.command} not allowed here: {' or '.join(ALLOWED)}"},
                {"Allow": ", ".join(ALLOWED)},
            )
            return False

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._answer(*self._route())

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
            self._answer(*self._route(), with_body=False)

        def _route(self) -> tuple[int, dict[str, Any]]:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                return 200, {"status": "ok"}
            if path == "/readyz":
                return readiness_body(checks)
            return 404, {"error": f"no {path} here: /healthz or /readyz"}

        def _drain_body(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            if 0 < length <= _DRAIN_BYTES:
                self.rfile.read(length)
            self.close_connection = True

        def _answer(
            self,
            status: int,
            body: dict[str, Any],
            headers: Mapping[str, str] | None = None,
            with_body: bool = True,
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            # HEAD's too: the length GET's body would have (RFC 9110, 9.3.2).
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if with_body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # a probe every few seconds would drown the service's own log

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        log.error(
            "health NOT served on %s:%d (%s); the service runs on without /healthz and /readyz",
            host,
            port,
            exc,
        )
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health on http://%s:%d/healthz and /readyz", host, server.server_address[1])
    return server
