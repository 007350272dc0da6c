"""Serving the API: one process, waitress in front of the Flask app.

waitress's I/O thread reads each request whole (line, headers and body) before one of the
API_THREADS threads runs it, so clients that send slowly, or not at all, hold a socket each and
no thread: /healthz still answers with hundreds of them connected (gunicorn's threads each
read their own request, and sixteen half-sent ones stopped the API). The deadlines of
request_limits.py close what arrives too slowly; a body over API_MAX_BODY_BYTES is answered
413 from its Content-Length, unread.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.task import ThreadedTaskDispatcher

from .file_limits import fit_connections
from .request_limits import DeadlineServer
from .security_headers import common_headers
from .settings import ApiSettings

log = logging.getLogger(__name__)

#: Seconds in-flight requests get to finish on SIGTERM before the process exits.
GRACE_S = 10


def adjustments(settings: ApiSettings, connections: int) -> Adjustments:
    return Adjustments(
        host=settings.api_host,
        port=settings.api_port,
        threads=settings.api_threads,
        connection_limit=connections,
        # waitress takes a Content-Length equal to its limit as too large: one over ours.
        max_request_body_size=settings.api_max_body_bytes + 1,
        # A connection that stops reading its answer: closed after this long without progress.
        channel_timeout=max(settings.api_header_timeout_s, settings.api_body_timeout_s),
        # The deadlines are checked this often (seconds).
        cleanup_interval=1,
        # select() cannot watch a descriptor numbered 1024 or more; poll() can.
        asyncore_use_poll=True,
        ident="album-publisher",
    )


def build(app: Any, settings: ApiSettings, connections: int) -> DeadlineServer:
    """The server, listening on API_HOST:API_PORT (every address the host resolves to)."""
    adj = adjustments(settings, connections)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict[int, Any] = {}
    servers = [
        DeadlineServer(
            app,
            socket_map,
            dispatcher=dispatcher,
            adj=adj,
            sockinfo=info,
            header_s=settings.api_header_timeout_s,
            body_s=settings.api_body_timeout_s,
            # The server's own refusals come before Flask: https as the settings vouch for it.
            common_headers=common_headers(settings.cookies_secure),
        )
        for info in adj.listen
    ]
    for server in servers:
        log.info("serving on http://%s:%s", server.effective_host, server.effective_port)
    return servers[0]  # its loop serves the map they share


def cannot_serve(settings: ApiSettings, exc: OSError | ValueError) -> str:
    """The one line the API exits with when it cannot listen where its settings say."""
    return (
        f"cannot serve on {settings.api_host}:{settings.api_port} (API_HOST, API_PORT): "
        f"{getattr(exc, 'strerror', None) or exc}"
    )


def serve(app: Any, settings: ApiSettings) -> None:
    open_files, connections = fit_connections(settings.api_max_connections)
    if connections < settings.api_max_connections:
        log.warning(
            "the open-file limit (%d) allows %d connections, not API_MAX_CONNECTIONS=%d",
            open_files,
            connections,
            settings.api_max_connections,
        )
    log.info(
        "up to %d connections (open-file limit %d), %d threads",
        connections,
        open_files,
        settings.api_threads,
    )
    try:
        server = build(app, settings, connections)
    # The port taken or not ours (OSError), the host unknown (waitress's ValueError): one line.
    except (OSError, ValueError) as exc:
        app.extensions["services"].close()
        raise SystemExit(cannot_serve(settings, exc)) from None
    signal.signal(signal.SIGTERM, _exit)
    try:
        wasyncore.loop(
            timeout=server.adj.asyncore_loop_timeout,
            map=server._map,
            use_poll=server.adj.asyncore_use_poll,
        )
    except (SystemExit, KeyboardInterrupt):
        # No new requests are read from here on; those running get GRACE_S to finish.
        log.info("stopping: waiting up to %d s for requests in flight", GRACE_S)
        server.task_dispatcher.shutdown(timeout=GRACE_S)
        app.extensions["services"].close()


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
