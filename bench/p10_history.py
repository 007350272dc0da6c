"""P10: the cost of what a user sees as their history grows.

Three rows, each ours against the same thing for a small account, in one run of the real API:

- `GET /api/albums` (the first page, the default limit) for a user with 10,000 albums against
  one with 100: p99 of the request, as a client times it;
- the album page (`GET /albums/<id>`, signed in) for an album of 200 photos against one of 20;
- the album's live stream (`/albums/<id>/events`): one photo changes in the store, and the
  time until the stream's event for it arrives, for the album of 200 against the album of 20.
  The stream reads the album every POLL_S (0.5 s), so that wait is most of each sample in both;
  what an album's size could add is the read, the diff and the event (whose bytes are shown).

The albums are written straight into the store (one bulk insert; the API's own publish is
P1's), two images each for the history users so that only the number of albums differs; the
two album-page albums are published through the store as the API would. Small and large
alternate request by request, so a slow moment of the machine lands on both.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import insert, text

from bench.common import Broker, Options, Row, log, ms, percentile
from bench.system import System, database
from shared.store import Store
from shared.store.tables import Album, Image

HISTORY = {"small": 100, "large": 10_000}
PHOTOS = {"small": 20, "large": 200}
GOAL = 1.2


def run(opts: Options, broker: Broker) -> list[Row]:
    rounds, warmup, changes = (60, 10, 10) if opts.quick else (300, 30, 40)
    with broker.vhost("p10") as url, database(opts, "p10") as db_url:
        system = System("p10", url, db_url, API_SSE_MAX_S="900")
        try:
            system.start_api()
            users = {size: system.create_user(f"bench-p10-{size}@example.com") for size in HISTORY}
            store = Store(db_url)
            try:
                for size, count in HISTORY.items():
                    _seed_history(store, users[size]["id"], users[size]["prefix"], count)
                albums = {
                    size: _album(store, users["small"], count) for size, count in PHOTOS.items()
                }
                log(
                    f"P10: {rounds} rounds (+{warmup} warm-up) of each request, "
                    f"{changes} stream changes each"
                )
                lists = _alternate(
                    {size: _api_list(system, users[size]["token"]) for size in HISTORY},
                    rounds,
                    warmup,
                )
                browser = _signed_in(system, users["small"]["token"])
                pages = _alternate(
                    {
                        size: _get(browser, f"{system.api_url}/albums/{album}")
                        for size, album in albums.items()
                    },
                    rounds,
                    warmup,
                )
                streams = {
                    size: _stream_delays(system, browser, store, album, changes)
                    for size, album in albums.items()
                }
                browser.close()
            finally:
                store.dispose()
        finally:
            system.stop_all()
    return [
        _row(
            "GET /api/albums, first page: 10,000 albums vs 100",
            lists,
            "100 albums",
            "P10 /api/albums 10k / 100",
        ),
        _row("album page: 200 photos vs 20", pages, "20 photos", "P10 album page 200 / 20"),
        _stream_row(streams),
    ]


# -- the data -----------------------------------------------------------------------------------


def _seed_history(store: Store, user_id: int, prefix: str, count: int) -> None:
    """`count` settled albums of two photos each, a minute apart, in two bulk inserts."""
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=count)
    albums = [
        {
            "id": uuid.uuid4().hex,
            "user_id": user_id,
            "title": f"p10 {n}",
            "state": "done",
            "settle_seq": 1,
            "created_at": start + timedelta(minutes=n),
        }
        for n in range(count)
    ]
    images = [
        {
            "album_id": album["id"],
            "position": i,
            "key": f"{prefix}p10/{n}-{i}.png",
            "state": "uploaded",
            "attempts": 1,
            "photo_id": f"p10-{n}-{i}",
        }
        for n, album in enumerate(albums)
        for i in range(2)
    ]
    with store.engine.begin() as connection:
        connection.execute(insert(Album), albums)
        connection.execute(insert(Image), images)


def _album(store: Store, user: dict[str, Any], count: int) -> str:
    """A publishing album of `count` photos (its messages marked sent: nothing consumes them)."""
    keys = [f"{user['prefix']}p10/live-{count}/{i:03d}.png" for i in range(count)]
    album_id, rows = store.create_album(user["id"], f"p10 live {count}", None, keys)
    store.mark_published([row.id for row in rows])
    return album_id


# -- the requests -------------------------------------------------------------------------------


def _api_list(system: System, token: str) -> Callable[[], None]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return _get(session, f"{system.api_url}/api/albums")


def _get(session: requests.Session, url: str) -> Callable[[], None]:
    def call() -> None:
        response = session.get(url, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")

    return call


def _signed_in(system: System, token: str) -> requests.Session:
    """A browser's session: the sign-in form, its CSRF token, the cookie."""
    session = requests.Session()
    form = session.get(f"{system.api_url}/login", timeout=10).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if match is None:
        raise RuntimeError("the sign-in page has no CSRF token")
    response = session.post(
        f"{system.api_url}/login",
        timeout=10,
        allow_redirects=False,
        data={"token": token, "csrf_token": match.group(1)},
    )
    if response.status_code != 303:
        raise RuntimeError(f"signing in answered {response.status_code}")
    return session


def _alternate(
    calls: dict[str, Callable[[], None]], rounds: int, warmup: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for n in range(warmup + rounds):
        for name in names if n % 2 else reversed(names):
            started = time.perf_counter()
            calls[name]()
            if n >= warmup:
                samples[name].append(time.perf_counter() - started)
    return samples


def _stream_delays(
    system: System, session: requests.Session, store: Store, album_id: str, changes: int
) -> dict[str, Any]:
    """Change one photo `changes` times (its attempts) and time each until its event."""
    url = f"{system.api_url}/albums/{album_id}/events"
    delays: list[float] = []
    sizes: list[int] = []
    with session.get(url, stream=True, timeout=30) as response:
        lines = response.iter_lines(decode_unicode=True)
        first = _next_event(lines)
        if first[0] != "album":
            raise RuntimeError(f"the stream began with {first[0]}")
        for n in range(changes):
            with store.engine.begin() as connection:
                connection.execute(
                    text(
                        "UPDATE images SET attempts = attempts + 1 "
                        "WHERE album_id = :album AND position = :position"
                    ),
                    {"album": album_id, "position": n % 5},
                )
            changed = time.perf_counter()
            kind, data = _next_event(lines)
            delays.append(time.perf_counter() - changed)
            if kind != "changes":
                raise RuntimeError(f"a change came as {kind}")
            sizes.append(len(data))
    return {"delays": delays, "first_bytes": len(first[1]), "change_bytes": max(sizes)}


def _next_event(lines: Any) -> tuple[str, str]:
    kind = ""
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind:
            return kind, line.removeprefix("data: ")
    raise RuntimeError("the stream ended")


# -- the rows -----------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50_s": percentile(values, 50), "p99_s": percentile(values, 99), "n": len(values)}


def _row(what: str, samples: dict[str, list[float]], reference: str, label: str) -> Row:
    stats = {size: _stats(values) for size, values in samples.items()}
    ratio = stats["large"]["p99_s"] / stats["small"]["p99_s"]

    def cell(size: str) -> str:
        return f"p50 {ms(stats[size]['p50_s'])}, p99 {ms(stats[size]['p99_s'])}"

    return Row(
        id="P10",
        what=f"{what} ({stats['large']['n']} requests each)",
        ours=cell("large"),
        reference=f"{reference}: {cell('small')}",
        ratio=ratio,
        goal=f"p99 / small p99 <= {GOAL}",
        met=ratio <= GOAL,
        figures={"latency": stats, "goal_ratio": GOAL, "label": label},
    )


def _stream_row(streams: dict[str, dict[str, Any]]) -> Row:
    stats = {size: _stats(found["delays"]) for size, found in streams.items()}
    ratio = stats["large"]["p99_s"] / stats["small"]["p99_s"]

    def cell(size: str) -> str:
        found = streams[size]
        return (
            f"p99 {ms(stats[size]['p99_s'])}; event {found['change_bytes']} B "
            f"(first, whole album: {found['first_bytes']} B)"
        )

    return Row(
        id="P10",
        what=f"live stream, one photo changed to its event: 200 photos vs 20 "
        f"({stats['large']['n']} changes each; polled every 0.5 s)",
        ours=cell("large"),
        reference=f"20 photos: {cell('small')}",
        ratio=ratio,
        goal=f"p99 / small p99 <= {GOAL}",
        met=ratio <= GOAL,
        figures={
            "latency": stats,
            "goal_ratio": GOAL,
            "label": "P10 live stream 200 / 20",
            "bytes": {
                size: {"change": found["change_bytes"], "first": found["first_bytes"]}
                for size, found in streams.items()
            },
        },
    )
