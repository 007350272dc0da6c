"""A small HTTP server for the consumers (uploader, notifier): GET /healthz (liveness: the
process answers) and GET /readyz (its readiness checks, `shared.observability.readiness`), on a port
of its own (UPLOADER_HEALTH_PORT, NOTIFIER_HEALTH_PORT) in a daemon thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.observability.readiness import Check, readiness_body

log = logging.getLogger(__name__)


def serve(host: str, port: int, checks: Mapping[str, Check]) -> ThreadingHTTPServer | None:
    """Start serving in a daemon thread; the caller may `shutdown()` it (a process's exit
    ends it anyway). None, logged, if the port cannot be bound: the service's work matters more
    than its probe, and a probe that finds no server says so loudly enough."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(200, {"status": "ok"})
            elif path == "/readyz":
                self._answer(*readiness_body(checks))
            else:
                self._answer(404, {"error": f"no {path} here: /healthz or /readyz"})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
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
