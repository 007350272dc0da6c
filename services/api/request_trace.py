"""A trace id per request: bound for its log lines and stamped on the outbox rows it writes.

A request may bring its own: the trace id of a W3C `traceparent`, else an `X-Request-Id` of
up to 64 letters, digits, dots, dashes and underscores; anything else gets a new one. The
answer names it in `X-Trace-Id`, so a caller can look up what its request set going.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from shared.observability import log_context

RESPONSE_HEADER = "X-Trace-Id"


def install(app: Flask) -> None:
    @app.before_request
    def _bind() -> None:
        trace = log_context.incoming_trace_id(
            request.headers.get("traceparent"), request.headers.get("X-Request-Id")
        )
        g.log_token = log_context.bind(trace_id=trace)

    @app.after_request
    def _name(response: Response) -> Response:
        if (trace := log_context.trace_id()) is not None:
            response.headers[RESPONSE_HEADER] = trace
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            log_context.unbind(token)
