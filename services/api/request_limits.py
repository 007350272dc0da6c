"""What a request must keep to: its headers in time, its body in time and within its size.

waitress reads every request whole on its I/O thread before a worker thread sees it, so a slow
client costs a socket, not a thread. Its own `channel_timeout` only closes connections that go
quiet, though: a client trickling a byte now and then would keep a connection (and a place
under the connection limit) for ever. These deadlines count from a fixed start instead, as
nginx's `client_header_timeout` does for the headers; the body's is stricter than nginx's
`client_body_timeout` (which only bounds the gap between two reads): docs/slow-clients.md.

waitress itself refuses a body over `max_request_body_size` from its Content-Length, unread
(413), and a request it cannot parse (400, 431), before Flask sees either: the parser here says
so in the API's words, and ApiErrorTask answers as the app would, JSON `{"error": reason}` on
the JSON API with the headers every answer carries (README, The HTTP API).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import Error, RequestEntityTooLarge
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from .api_errors import wants_json

log = logging.getLogger(__name__)


class LimitedParser(HTTPRequestParser):  # type: ignore[misc]
    def received(self, data: bytes) -> int:
        consumed = int(super().received(data))
        error = getattr(self, "error", None)
        if isinstance(error, RequestEntityTooLarge):
            # waitress refuses a body of its limit or more: the limit it was given is ours + 1.
            largest = self.adj.max_request_body_size - 1
            self.error = RequestEntityTooLarge(
                f"a request body may have at most {largest} bytes (API_MAX_BODY_BYTES)"
            )
        return consumed


def error_answer(
    error: Error, path: str, accept: str, common: Sequence[tuple[str, str]]
) -> tuple[str, list[tuple[str, str]], bytes]:
    """The status, headers and body of waitress's refusal `error` of a request for `path`:
    JSON as the app's errors are (api_errors.py) on /api/ or for a client that prefers JSON,
    waitress's own text elsewhere; with `common`, the headers of every answer, either way."""
    status = f"{error.code} {error.reason}"
    if wants_json(path, parse_accept_header(accept, MIMEAccept)):
        kind, body = "application/json", json.dumps({"error": str(error.body)}).encode()
    else:
        kind, body = "text/plain; charset=utf-8", f"{error.reason}\r\n\r\n{error.body}".encode()
    return status, [("Content-Type", kind), *common], body


class ApiErrorTask(ErrorTask):  # type: ignore[misc]
    """waitress's answer to a request it refused itself, as error_answer makes it."""

    def execute(self) -> None:
        request = self.request
        status, headers, body = error_answer(
            request.error,
            getattr(request, "path", "") or "",
            request.headers.get("ACCEPT", ""),
            self.channel.server.common_headers,
        )
        self.status = status
        self.response_headers.extend(headers)
        self.set_close_on_finish()  # what waitress does: the rest of the request is unread
        self.content_length = len(body)
        self.write(body)


class DeadlineChannel(HTTPChannel):  # type: ignore[misc]
    """A connection that knows since when it waits for a request's headers or its body."""

    parser_class = LimitedParser
    error_task_class = ApiErrorTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The headers' clock: from the connection's opening, then from each answer's end.
        self.waiting_since = self.creation_time
        self._body_of: Any = None
        self._body_since = 0.0

    def received(self, data: bytes) -> bool:
        handled = bool(super().received(data))
        partial = self.request  # the request still arriving, if any
        if partial is not None and partial.headers_finished and partial is not self._body_of:
            self._body_of, self._body_since = partial, time.time()
        return handled

    def service(self) -> None:
        try:
            super().service()
        finally:
            self.waiting_since = time.time()

    def late(self, now: float, header_s: float, body_s: float) -> str | None:
        """What arrived too late ("headers", "body"), or None while it is still in time."""
        if self.requests or self.total_outbufs_len:
            # A request is running, or its answer still being sent (waitress's channel_timeout
            # bounds a reader that stops reading): the next request's clock starts after.
            self.waiting_since = now
            return None
        partial = self.request
        if partial is not None and partial is self._body_of:
            return "body" if now - self._body_since > body_s else None
        return "headers" if now - self.waiting_since > header_s else None


class DeadlineServer(TcpWSGIServer):  # type: ignore[misc]
    """waitress's TCP server, closing connections whose request is late at each maintenance."""

    channel_class = DeadlineChannel

    def __init__(
        self,
        *args: Any,
        header_s: float,
        body_s: float,
        common_headers: Sequence[tuple[str, str]] = (),
        **kwargs: Any,
    ) -> None:
        self.header_s, self.body_s = header_s, body_s
        #: The headers every answer carries (security_headers.py): its own refusals' too.
        self.common_headers = common_headers
        super().__init__(*args, **kwargs)

    def maintenance(self, now: float) -> None:
        dropped: dict[str, int] = {}
        for channel in list(self.active_channels.values()):
            what = channel.late(now, self.header_s, self.body_s)
            if what is not None and not channel.will_close:
                channel.will_close = True  # closed by the I/O loop on its next pass
                dropped[what] = dropped.get(what, 0) + 1
        for what, count in dropped.items():
            log.info("closed %d connection(s) whose request's %s came too late", count, what)
        super().maintenance(now)  # waitress's channel_timeout: a client that stopped reading
