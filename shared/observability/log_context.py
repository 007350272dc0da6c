"""What a log line is about: the ids bound for one HTTP request or one handler's run.

The runtime binds them (contextvars, so each worker thread and each request has its own):
the API a trace id per request, the consumer runtime the delivery's album_id, image_id,
message_id, attempt and trace id for the handler's duration. Handlers log as they always did
and `shared.observability.log_format` adds the bound ids to every line.

The trace id travels in the `album-trace-id` header: the store stamps the bound one on every
outbox row it writes (`stamp`), and retry copies and dead letters keep the headers they came
with, so one id follows an album from its POST to its email.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from shared.policies.retry_policy import attempt_of

TRACE_HEADER = "album-trace-id"
#: The fields a log line may carry besides its own, in the order a JSON line shows them.
FIELDS = ("trace_id", "album_id", "image_id", "message_id", "attempt")
#: A trace id from outside (a header of a request) is taken only if it looks like one.
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: W3C Trace Context: version-traceid-parentid-flags; only the trace id is kept.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
#: Bodies past this are not parsed for ids (the consumer refuses them as poison anyway).
_MAX_BODY = 64 * 1024

#: The layers bound, innermost last: fields, or a function that reads them when first asked
#: (a delivery's ids cost a JSON parse, which a handler that logs nothing need not pay).
_Layer = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
_bound: ContextVar[tuple[_Layer, ...]] = ContextVar("log_fields", default=())


def current() -> Mapping[str, Any]:
    """The fields bound here now (empty outside a request or a handler)."""
    fields: dict[str, Any] = {}
    for layer in _bound.get():
        fields.update(layer() if callable(layer) else layer)
    return {k: v for k, v in fields.items() if v is not None}


def trace_id() -> str | None:
    value = current().get("trace_id")
    return str(value) if value is not None else None


def bind(**fields: Any) -> Token[tuple[_Layer, ...]]:
    """Bind `fields` (those not None) on top of what is bound, until `unbind(token)`."""
    return _bound.set((*_bound.get(), fields))


def bind_lazily(read: Callable[[], Mapping[str, Any]]) -> Token[tuple[_Layer, ...]]:
    """`bind` the fields `read` returns, read each time a line or a row asks (not cached: a
    cache costs more to build than the few lines of a handler cost to read)."""
    return _bound.set((*_bound.get(), read))


def unbind(token: Token[tuple[_Layer, ...]]) -> None:
    _bound.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """`bind` for the duration of a block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def bind_message(
    body: bytes, headers: Mapping[str, Any], message_id: str | None
) -> Token[tuple[_Layer, ...]]:
    """Bind the message's ids (`of_message`), read only if a line or a row asks for them."""
    return bind_lazily(functools.partial(of_message, body, headers, message_id))


@contextmanager
def bound_to_message(
    body: bytes, headers: Mapping[str, Any], message_id: str | None
) -> Iterator[None]:
    """`bind_message` for the duration of a block."""
    token = bind_message(body, headers, message_id)
    try:
        yield
    finally:
        unbind(token)


def new_trace_id() -> str:
    """32 hex digits: the shape of a W3C trace id, so one can be passed on as a traceparent."""
    return uuid.uuid4().hex


def incoming_trace_id(traceparent: str | None, request_id: str | None) -> str:
    """The trace id a request brings (a W3C `traceparent`, else an `X-Request-Id` of safe
    characters), or a new one."""
    if traceparent and (match := _TRACEPARENT.fullmatch(traceparent.strip())):
        return match.group(1)
    if request_id and _SAFE_ID.fullmatch(request_id.strip()):
        return request_id.strip()
    return new_trace_id()


def of_message(
    body: bytes, headers: Mapping[str, Any], message_id: str | None = None
) -> dict[str, Any]:
    """The fields a message gives its handler's log lines: read leniently, since a poison
    body must still be logged (with what can be read of it)."""
    fields: dict[str, Any] = {"message_id": message_id}
    trace = headers.get(TRACE_HEADER)
    if isinstance(trace, (str, bytes)):
        trace = trace.decode(errors="replace") if isinstance(trace, bytes) else trace
        fields["trace_id"] = trace if _SAFE_ID.fullmatch(trace) else None
    fields["attempt"] = attempt_of(headers)
    fields.update(_ids_in(body))
    return fields


def _ids_in(body: bytes) -> dict[str, Any]:
    if len(body) > _MAX_BODY:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    album_id, image_id = parsed.get("album_id"), parsed.get("image_id")
    return {
        "album_id": album_id if isinstance(album_id, str) else None,
        "image_id": image_id if isinstance(image_id, int) else None,
    }


def stamp(headers: Mapping[str, Any]) -> dict[str, Any]:
    """`headers` with the bound trace id added, unless they carry one already (a copy keeps
    the trace of the message it copies)."""
    trace = trace_id()
    if trace is None or TRACE_HEADER in headers:
        return dict(headers)
    return {**headers, TRACE_HEADER: trace}
