"""Thin Graph API client: create an album, stream a photo into it, list an album's photos.

It does I/O and turns every failure into a `GraphError` with the fields Graph sent; deciding
whether to retry is `failures.classify`'s job, so there is no retry logic here. The Page token
goes in an `Authorization: Bearer` header, never in a URL, so it cannot end up in logs.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import requests
import requests.adapters
import urllib3.exceptions
from requests_toolbelt.multipart.encoder import MultipartEncoder

from shared.observability import metrics

#: What recognises a photo an uncertain attempt sent (`photo_match`): no mark of ours.
LIST_FIELDS = "id,name,created_time,width,height,images"
LIST_PAGE_SIZE = 25

# What requests raises when the connection, not the server, failed.
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class GraphError(Exception):
    """A failed Graph call, with what Graph (or the network) told us about it."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        is_transient: bool | None = None,
        fbtrace_id: str | None = None,
        regain_access_minutes: float | None = None,
        retry_after_s: float | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.subcode = subcode
        self.is_transient = is_transient
        self.fbtrace_id = fbtrace_id
        self.regain_access_minutes = regain_access_minutes
        self.retry_after_s = retry_after_s
        self.error_type = error_type

    def __str__(self) -> str:
        details = []
        if self.code is not None:
            details.append(f"code {self.code}" + (f"/{self.subcode}" if self.subcode else ""))
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        if self.fbtrace_id:
            details.append(f"fbtrace_id {self.fbtrace_id}")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class GraphNetworkError(GraphError):
    """Graph could not be reached or the connection broke: no HTTP status, no Graph code.

    `request_sent` is False only when the connection was never made (refused, name lookup,
    connect timeout): then Graph surely did nothing. Otherwise it may have done the work and
    lost only its answer."""

    def __init__(
        self, message: str, *, request_sent: bool = True, cause: str = "the connection failed"
    ) -> None:
        super().__init__(message)
        self.request_sent = request_sent
        #: Why, in a few plain words (no address): what the user may be shown.
        self.cause = cause


class SourceTruncatedError(OSError):
    """The photo stream ended before the promised number of bytes."""


class _CountdownReader:
    """A sized view of a non-seekable stream (such as botocore's StreamingBody) for toolbelt.

    MultipartEncoder sizes each part through a `len` attribute and keeps reading while it is
    above zero, so `len` counts down as bytes go out. That gives requests a Content-Length and
    keeps the body streaming in small reads instead of being loaded whole.
    """

    def __init__(self, source: BinaryIO, length: int) -> None:
        self._source = source
        self.len = length
        self.error: Exception | None = None

    def read(self, size: int | None = -1) -> bytes:
        if self.len <= 0 or size == 0:
            return b""
        wanted = self.len if size is None or size < 0 else min(size, self.len)
        try:
            chunk = self._source.read(wanted)
        except Exception as exc:
            self.error = exc
            raise
        if not chunk:
            # Raise rather than return b"": the encoder would loop forever waiting for bytes,
            # and the server would wait for a body that never completes.
            self.error = SourceTruncatedError(f"photo stream ended with {self.len} bytes unread")
            raise self.error
        self.len -= len(chunk)
        return chunk


#: How much of a photo each send to Facebook reads and writes at once. urllib3's default
#: (16 KiB) makes a 10 MB photo 610 trips through the encoder, our reader, botocore and the
#: socket, each a stack of Python calls: most of the uploader's CPU per byte (issue 14, P8).
#: Four uploads hold 1 MiB between them, next to the ~90 MiB the process needs anyway (P4).
SEND_BLOCK_BYTES = 256 * 1024


class _BlockAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, its connections sending bodies SEND_BLOCK_BYTES at a time."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(
            connections, maxsize, block, blocksize=SEND_BLOCK_BYTES, **pool_kwargs
        )


def _session(pool_size: int) -> requests.Session:
    # One kept-alive connection per upload thread: with requests' default of 10, threads
    # beyond the tenth open a new connection for each photo and throw it away after.
    session = requests.Session()
    adapter = _BlockAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class GraphClient:
    """Calls to one Page's albums and photos on the Graph API (or the local simulator)."""

    def __init__(
        self,
        base_url: str,
        version: str,
        page_id: str,
        page_token: str,
        timeout: tuple[float, float] = (5.0, 120.0),
        session: requests.Session | None = None,
        pool_size: int = 10,
        on_usage: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        #: Called with every answer's headers (Facebook's usage: `throttle_gate.ThrottleGate`).
        self._on_usage = on_usage
        self._base_url = base_url.rstrip("/")
        self._version = version
        self._page_id = page_id
        self._token = page_token
        self._timeout = timeout
        self._owns_session = session is None
        self._session = session or _session(pool_size)

    def __repr__(self) -> str:
        # Spelled out so the token never shows up in a log line or traceback.
        return f"GraphClient({self._base_url!r}, {self._version!r}, page_id={self._page_id!r})"

    @property
    def page_id(self) -> str:
        return self._page_id

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def create_album(self, name: str, message: str | None = None) -> str:
        fields = {"name": name} if message is None else {"name": name, "message": message}
        body = self._send("POST", self._url(self._page_id, "albums"), data=fields)
        return _id_of(body)

    def upload_photo(
        self,
        album_id: str,
        source: BinaryIO,
        length: int,
        filename: str,
        content_type: str,
        caption: str,
        published: bool = True,
    ) -> str:
        """Stream `length` bytes of `source` into the album (or, unpublished, to the Page:
        `album_id` is then the Page's id); returns the new photo's id."""
        reader = _CountdownReader(source, length)
        fields: list[tuple[str, Any]] = [("caption", caption)]
        if not published:
            fields.append(("published", "false"))
        fields.append(("source", (filename, reader, content_type)))
        encoder = MultipartEncoder(fields=fields)
        try:
            body = self._send(
                "POST",
                self._url(album_id, "photos"),
                data=encoder,
                headers={"Content-Type": encoder.content_type},
            )
        except Exception as exc:
            # requests reports a failed read of the body as a broken connection; surface the
            # source's own error so an S3 failure is classified as one.
            if reader.error is not None and exc is not reader.error:
                raise reader.error from exc
            raise
        metrics.BYTES_SENT.inc(length)
        return _id_of(body)

    def list_album_photos(self, album_id: str) -> Iterator[dict[str, Any]]:
        """Every photo in the album (id, name, created_time, size), following Graph's paging."""
        return self._list(self._url(album_id, "photos"), LIST_FIELDS)

    def create_post(self, message: str, photo_ids: Sequence[str]) -> str:
        """One Page post attaching unpublished photos (`attached_media`); returns its id."""
        fields = {"message": message}
        for i, photo_id in enumerate(photo_ids):
            fields[f"attached_media[{i}]"] = json.dumps({"media_fbid": photo_id})
        body = self._send("POST", self._url(self._page_id, "feed"), data=fields)
        return _id_of(body)

    def list_posts(self) -> Iterator[dict[str, Any]]:
        """The Page's posts, newest first, each with the photos it attaches."""
        return self._list(self._url(self._page_id, "posts"), "id,message,created_time,attachments")

    def list_albums(self) -> Iterator[dict[str, Any]]:
        """Every album of the page (id, name, description, created_time), following Graph's
        paging."""
        return self._list(self._url(self._page_id, "albums"), "id,name,description,created_time")

    def _list(self, url: str | None, fields: str) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] | None = {"fields": fields, "limit": LIST_PAGE_SIZE}
        while url:
            body = self._send("GET", url, params=params)
            data = body.get("data", [])
            if not isinstance(data, list):
                raise GraphError("Graph API returned a list in an unexpected shape")
            yield from data
            url = self._next_url(body)
            params = None  # paging.next already carries the whole query

    def _url(self, node: str, edge: str) -> str:
        return f"{self._base_url}/{self._version}/{quote(node, safe='')}/{edge}"

    def _next_url(self, body: Mapping[str, Any]) -> str | None:
        paging = body.get("paging")
        url = paging.get("next") if isinstance(paging, dict) else None
        if not isinstance(url, str) or not url:
            return None
        # We send the token with every request, so only follow links back to the same server.
        if _origin(url) != _origin(self._base_url):
            raise GraphError(f"Graph API paging link points to another host: {_origin(url)}")
        return url

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        all_headers = {"Authorization": f"Bearer {self._token}", **(headers or {})}
        try:
            response = self._session.request(
                method, url, params=params, data=data, headers=all_headers, timeout=self._timeout
            )
        except _NETWORK_ERRORS as exc:
            cause = _network_cause(exc)
            raise GraphNetworkError(
                f"could not complete the Graph API call to {_origin(url)}: {cause}",
                request_sent=not _never_connected(exc),
                cause=cause,
            ) from exc
        if self._on_usage is not None:
            self._on_usage(response.headers)
        return _parse_response(response)


def _parse_response(response: requests.Response) -> dict[str, Any]:
    if not 200 <= response.status_code < 300:
        raise _error_from_response(response)
    body = _json_or_none(response)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raise _error_from_response(response)
    if not isinstance(body, dict):
        raise GraphError(
            "Graph API returned a success status without a JSON object",
            http_status=response.status_code,
            fbtrace_id=response.headers.get("x-fb-trace-id"),
        )
    return body


def _error_from_response(response: requests.Response) -> GraphError:
    body = _json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    common: dict[str, Any] = {
        "http_status": response.status_code,
        "regain_access_minutes": _regain_access_minutes(response.headers),
        "retry_after_s": _retry_after_s(response.headers.get("Retry-After")),
    }
    if isinstance(error, dict):
        transient = error.get("is_transient")
        return GraphError(
            str(error.get("message") or "Graph API error"),
            code=_as_int(error.get("code")),
            subcode=_as_int(error.get("error_subcode")),
            is_transient=transient if isinstance(transient, bool) else None,
            fbtrace_id=error.get("fbtrace_id") or response.headers.get("x-fb-trace-id"),
            error_type=error.get("type"),
            **common,
        )
    # Not a Graph body: a proxy or load balancer answered (often an HTML error page).
    text = " ".join(re.sub(r"<[^>]+>", " ", response.text).split())[:200]
    message = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
    return GraphError(
        f"{message} from the Graph API" + (f": {text}" if text else ""),
        fbtrace_id=response.headers.get("x-fb-trace-id"),
        **common,
    )


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _regain_access_minutes(headers: Mapping[str, str]) -> float | None:
    """The longest `estimated_time_to_regain_access` (minutes) in X-Business-Use-Case-Usage."""
    raw = headers.get("X-Business-Use-Case-Usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(usage, dict):
        return None
    minutes = [
        float(entry["estimated_time_to_regain_access"])
        for entries in usage.values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("estimated_time_to_regain_access"), int | float)
    ]
    return max(minutes) if minutes else None


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header, either delay-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _id_of(body: Mapping[str, Any]) -> str:
    if "id" not in body:
        raise GraphError("Graph API response has no id")
    return str(body["id"])


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _network_cause(exc: BaseException) -> str:
    """A short name for why the connection failed, found anywhere in the exception chain."""
    causes = list(_exception_chain(exc))
    checks: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
        (requests.ConnectTimeout, "timed out connecting"),
        (requests.ReadTimeout, "timed out waiting for the response"),
        (ConnectionRefusedError, "connection refused"),
        ((ConnectionResetError, BrokenPipeError, ConnectionAbortedError), "connection reset"),
        (socket.gaierror, "host name lookup failed"),
        (TimeoutError, "timed out"),
        (requests.exceptions.ChunkedEncodingError, "response cut off"),
    ]
    for kinds, label in checks:
        if any(isinstance(cause, kinds) for cause in causes):
            return label
    return "the connection failed"


def _never_connected(exc: BaseException) -> bool:
    """The request never left: the connection itself failed (refused, lookup, connect timeout)."""
    return any(
        isinstance(
            cause,
            (
                requests.ConnectTimeout,
                ConnectionRefusedError,
                socket.gaierror,
                urllib3.exceptions.NewConnectionError,
            ),
        )
        for cause in _exception_chain(exc)
    )


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    # requests and urllib3 nest the socket error in args, `.reason` and __cause__.
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        stack.extend(item for item in linked if isinstance(item, BaseException))


def graph_text(exc: GraphError) -> str:
    """Graph's message without the "(#code) " prefix, cut short, with the code appended:
    Facebook's own reason, fit to show (no trace id, no address of ours)."""
    text = exc.message
    if text.startswith("(#"):
        text = text.partition(") ")[2] or text
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{text} (code {exc.code})"
