"""P9: a busy hour. 10 users publish 50 albums of 20 images at once, on PostgreSQL, with two
uploader processes and 0.2 s of Graph latency per photo; then a 5-image album is published
right behind a 200-image one.

- Throughput: images per second from the first POST to the last album's `settled_at` (the
  store's clock, P3's), against the bound C / latency (C: the uploads of both processes,
  UPLOADER_CONCURRENCY x 2 at its default of 4). Goal: >= 0.85 of the bound.
  The CPU each image cost, ours (the uploaders and the API) and the stand-ins' (moto, the
  Graph simulator), is shown beside it: what the bound needs of the machine.
- Fair turns (docs/fair-turns.md): the 5-image album's time from its POST to its
  `settled_at`, against its own ideal, ceil(5 / C) x latency. Goal: within 2 x. Its time
  alone on the same system, just before, is shown beside it.

The store is PostgreSQL whatever `--store` says (the row is about it). ALBUM_WINDOW is C, as
the uploader's settings make it by default. The images are 100 KB (the bytes are P8's).
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests
from sqlalchemy import bindparam, create_engine, text

from bench.common import Broker, Options, Row, log, py_spy, stop_profiler, wait_for
from bench.p2_consume import cpu_seconds
from bench.p3_concurrency import uploader_ready
from bench.system import System, database
from dev.images import png_of_size
from shared.store import Store

USERS, ALBUMS, IMAGES = 10, 50, 20
PROCESSES, PER_PROCESS = 2, 4
C = PROCESSES * PER_PROCESS
LATENCY_S = 0.2
BIG, SMALL = 200, 5
RATE_GOAL, FAIR_GOAL = 0.85, 2.0


def run(opts: Options, broker: Broker) -> list[Row]:
    opts = dataclasses.replace(opts, store="postgres")
    albums = 10 if opts.quick else ALBUMS
    with broker.vhost("p9") as url, database(opts, "p9") as db_url:
        system = System("p9", url, db_url, ALBUM_WINDOW=str(C))
        try:
            system.start_stand_ins()
            system.start_api()
            users = _users(system, db_url)
            keys = [
                system.put_images(user["prefix"], png_of_size(100_000), IMAGES, "p9")
                for user in users
            ]
            big = system.put_images(users[0]["prefix"], png_of_size(100_000), BIG, "p9-big")
            system.set_faults(latency_s=LATENCY_S)
            uploader_ready(system, url, C, PROCESSES)
            log(f"P9: {albums} albums of {IMAGES} from {USERS} users at once, C={C}")
            cpu = _cpu(system)
            profiler = (
                py_spy(system.procs["uploader"].pid, "p9-uploader", True) if opts.profile else None
            )
            try:
                span = _busy(system, db_url, users, keys, albums)
            finally:
                stop_profiler(profiler)
            cpu = {
                name: (after - cpu[name]) / (albums * IMAGES)
                for name, after in _cpu(system).items()
            }
            log(
                f"P9: {albums * IMAGES} images in {span:.2f} s; now {SMALL} alone, then "
                f"behind {BIG}"
            )
            alone = _alone(system, db_url, users[1]["token"], keys[1][:SMALL])
            fair = _behind(system, db_url, users, big, keys[1][:SMALL])
            log(f"P9: the {SMALL}-image album settled in {fair:.2f} s")
        finally:
            system.stop_all()
    return _rows(albums * IMAGES, span, (fair, alone), cpu)


def _users(system: System, db_url: str) -> list[dict[str, Any]]:
    store = Store(db_url)
    try:
        made = [store.create_user(f"bench-p9-{n}@example.com") for n in range(USERS)]
    finally:
        store.dispose()
    return [{"prefix": user.prefix, "token": token} for user, token in made]


def _busy(
    system: System, db_url: str, users: list[dict[str, Any]], keys: list[list[str]], albums: int
) -> float:
    """Post `albums` albums spread over the users, all at once; seconds to the last settle."""
    jobs = [(users[n % USERS]["token"], keys[n % USERS], f"p9 {n}") for n in range(albums)]
    started = time.time()
    with ThreadPoolExecutor(len(jobs)) as pool:
        ids = list(pool.map(lambda job: _post(system, *job), jobs))
    last = _wait_settled(db_url, ids, timeout=600)
    return last - started


def _post(system: System, token: str, keys: list[str], title: str) -> str:
    """POST the album on a session of the thread's own; a refusal says why."""
    response = requests.post(
        f"{system.api_url}/api/albums",
        timeout=60,
        json={"title": title, "images": keys},
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status_code != 202:
        raise RuntimeError(
            f"POST /api/albums answered {response.status_code}: {response.text[:300]}"
        )
    return str(response.json()["id"])


def _cpu(system: System) -> dict[str, float]:
    """CPU seconds so far: ours (the uploaders and the API) and the stand-ins (S3, Graph)."""
    pids = {name: proc.pid for name, proc in system.procs.items()}
    return {
        "ours": cpu_seconds([pids["uploader"], pids["api"]]),
        "stand-ins": cpu_seconds([pids["s3"], pids["graph"]]),
    }


def _alone(system: System, db_url: str, token: str, small: list[str]) -> float:
    """The small album with nothing else queued: the seconds it takes on this machine."""
    started = time.time()
    album_id = _post(system, token, small, "p9 alone")
    return _wait_settled(db_url, [album_id], timeout=120) - started


def _behind(
    system: System, db_url: str, users: list[dict[str, Any]], big: list[str], small: list[str]
) -> float:
    """The big album, then at once the small one (another user's); the small one's seconds."""
    _post(system, users[0]["token"], big, "p9 big")
    started = time.time()
    album_id = _post(system, users[1]["token"], small, "p9 small")
    return _wait_settled(db_url, [album_id], timeout=300) - started


def _wait_settled(db_url: str, ids: list[str], timeout: float) -> float:
    """The latest `settled_at` of the albums (epoch seconds), once all have settled."""
    engine = create_engine(db_url)
    query = text(
        "SELECT count(*) - count(settled_at), max(settled_at) FROM albums WHERE id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))

    def latest() -> datetime | None:
        with engine.connect() as connection:
            waiting, last = connection.execute(query, {"ids": ids}).one()
        return last if waiting == 0 else None

    try:
        last = wait_for(latest, timeout, every=0.25, what="the albums to settle")
    finally:
        engine.dispose()
    return float(last.replace(tzinfo=UTC).timestamp())


def _rows(images: int, span: float, small: tuple[float, float], cpu: dict[str, float]) -> list[Row]:
    bound = C / LATENCY_S
    rate = images / span
    ideal = math.ceil(SMALL / C) * LATENCY_S
    fair, alone = small
    return [
        Row(
            id="P9",
            what=f"busy hour: {USERS} users, {images // IMAGES} albums of {IMAGES} at "
            f"once, PostgreSQL, {PROCESSES} uploader processes (C={C}), Graph "
            f"{LATENCY_S} s",
            ours=f"{rate:.1f} images/s ({images} in {span:.1f} s; CPU per image: ours "
            f"{cpu['ours'] * 1000:.0f} ms, stand-ins {cpu['stand-ins'] * 1000:.0f} ms)",
            reference=f"bound C / latency = {bound:.0f} images/s",
            ratio=rate / bound,
            goal=f">= {RATE_GOAL} x the bound",
            met=rate / bound >= RATE_GOAL,
            figures={
                "images": images,
                "span_s": span,
                "bound": bound,
                "cpu_s_per_image": cpu,
                "goal_ratio": RATE_GOAL,
                "goal_kind": "min",
                "label": "P9 rate / bound",
            },
        ),
        Row(
            id="P9",
            what=f"fair turns: a {SMALL}-image album right behind a {BIG}-image one "
            f"(C={C}, Graph {LATENCY_S} s)",
            ours=f"{fair:.2f} s (alone: {alone:.2f} s)",
            reference=f"its ideal ceil({SMALL}/{C}) x {LATENCY_S} s = {ideal:.1f} s",
            ratio=fair / ideal,
            goal=f"<= {FAIR_GOAL} x its ideal",
            met=fair / ideal <= FAIR_GOAL,
            figures={
                "settled_s": fair,
                "alone_s": alone,
                "ideal_s": ideal,
                "goal_ratio": FAIR_GOAL,
                "label": "P9 small behind big / ideal",
            },
        ),
    ]
