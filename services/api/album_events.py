"""An album page's live progress: a server-sent event stream that polls the store (there is no
per-album broadcast to subscribe to), sending the album once and then what changed in it
(services/api/album_changes.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, g, stream_with_context

from shared.store import AlbumState

from . import rate_limits
from .album_changes import AlbumChanges
from .album_model import album_fields_model, image_model
from .album_pages import owned_album
from .live_streams import LiveStreams
from .page_guards import signed_in
from .services import current_services

#: How often an open stream reads the album; a browser sees a change within this.
POLL_S = 0.5
#: A comment this often keeps proxies from timing the stream out and notices a gone browser.
KEEPALIVE_S = 15.0
#: How long a browser waits before reconnecting (a stream that ended, or one refused for load).
RECONNECT_MS = 3000
#: When a browser refused a stream for its user's open streams tries again (the page's script).
USER_STREAMS_RETRY_S = 15
_streams_lock = threading.Lock()


def _stream_slots() -> threading.BoundedSemaphore:
    with _streams_lock:  # one pool per app and process, made on first use
        slots = current_app.extensions.get("web.streams")
        if slots is None:
            slots = threading.BoundedSemaphore(current_services().settings.sse_streams())
            current_app.extensions["web.streams"] = slots
        return slots


def _album_events(album_id: str, user_id: int) -> Iterator[str]:
    """Send the album now, then what changed in it on every change; end once it settled, or
    after API_SSE_MAX_S.

    Each open stream holds one of the API_THREADS threads, so it never outlives its use: the browser
    closes it when the album settles and reconnects on its own after a timeout. Past the
    limit of open streams a browser still gets the album at once, then polls by reconnecting.
    """
    # Taken here, not in the view: a stream the server never started never releases a slot.
    slots = _stream_slots()
    holding = slots.acquire(blocking=False)
    store, clock = current_services().store, current_services().clock
    deadline = clock.monotonic() + current_services().settings.api_sse_max_s
    changes, quiet_since = AlbumChanges(album_fields_model, image_model), clock.monotonic()
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        while True:
            album = store.album(album_id, user_id)
            if album is None:
                yield "event: gone\ndata: {}\n\n"
                return
            event = changes.event(album)
            if event is not None:
                quiet_since = clock.monotonic()
                yield event
            if album.state != AlbumState.PUBLISHING or not holding or clock.monotonic() > deadline:
                return
            if clock.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = clock.monotonic()
                yield ": still here\n\n"
            clock.sleep(POLL_S)
    finally:
        if holding:
            slots.release()


def _live_streams() -> LiveStreams:
    with _streams_lock:  # one count per app and process, made on first use
        streams = current_app.extensions.get("web.user_streams")
        if streams is None:
            streams = LiveStreams(current_services().settings.sse_streams_per_user())
            current_app.extensions["web.user_streams"] = streams
        return streams


@signed_in
def album_events(album_id: str) -> Any:
    owned_album(album_id)
    user_id, streams = g.user.id, _live_streams()
    if not streams.take(user_id):
        raise rate_limits.Refused(
            f"Too many live album pages open (at most {streams.per_user} for each user): close "
            "one; this page shows the album as it was and tries again",
            USER_STREAMS_RETRY_S,
        )
    stream = stream_with_context(_album_events(album_id, user_id))
    response = Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    # The server closes every response it started (PEP 3333), even one never iterated: the
    # user's stream is given back there, not in the generator, which may never have run.
    response.call_on_close(lambda: streams.give_back(user_id))
    return response
