"""P3: an album of 20 with the Graph simulator answering each photo after 1 s.

The whole system runs as processes (moto, the simulator, the API, the uploader with
UPLOADER_CONCURRENCY=C). The wall time runs from just before the POST to the album's
`settled_at` in the store, so it includes the API, the broker, the Facebook album's creation
and the settle; the ideal is ceil(20 / C) s of photo latency and nothing else.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench.common import (
    Broker,
    Options,
    QueueWatch,
    Row,
    log,
    py_spy,
    stop_profiler,
    wait_for,
)
from bench.system import System, database, settle_seconds
from dev.images import png_of_size
from shared import topology

IMAGES = 20
LATENCY_S = 1.0
ALBUMS_PER_C = 2  # the worse of two: the first pays for new connections, both count


def uploader_ready(system: System, url: str, concurrency: int) -> None:
    """Start a fresh uploader and wait until it consumes (its queue shows the consumer)."""
    system.start_uploader(concurrency)
    watch = QueueWatch(url, topology.IMAGE_UPLOADS.name)
    try:
        wait_for(lambda: watch.consumers() >= 1, 60, what="the uploader to consume")
    finally:
        watch.close()


def time_album(system: System, token: str, keys: list[str],
               title: str) -> tuple[float, dict[str, Any]]:
    started = time.time()
    album_id = system.post_album(token, title, keys)
    album = system.wait_settled(token, album_id, timeout=300)
    return settle_seconds(system.database_url, album_id, started), album


def run(opts: Options, broker: Broker) -> list[Row]:
    concurrencies = (4,) if opts.quick else (4, 10, 20)
    walls: dict[int, list[float]] = {}
    with broker.vhost("p3") as url, database(opts, "p3") as db_url:
        system = System("p3", url, db_url)
        try:
            system.start_stand_ins()
            system.start_api()
            user = system.create_user("bench-p3@example.com")
            keys = system.put_images(user["prefix"], png_of_size(100_000), IMAGES, "p3")
            system.set_faults(latency_s=LATENCY_S)  # on photo uploads only (the default)
            for concurrency in concurrencies:
                uploader_ready(system, url, concurrency)
                profiler = (py_spy(system.procs["uploader"].pid, f"p3-uploader-c{concurrency}")
                            if opts.profile else None)
                for n in range(ALBUMS_PER_C):
                    wall, album = time_album(system, user["token"], keys, f"p3 C={concurrency} {n}")
                    if album["state"] != "done":
                        raise RuntimeError(f"album ended {album['state']}: {album['counts']}")
                    walls.setdefault(concurrency, []).append(wall)
                stop_profiler(profiler)
                log(f"P3: C={concurrency}: {', '.join(f'{w:.2f} s' for w in walls[concurrency])}")
        finally:
            system.stop_all()
    return [_row(c, w) for c, w in walls.items()]


def _row(concurrency: int, walls: list[float]) -> Row:
    ideal = math.ceil(IMAGES / concurrency) * LATENCY_S
    worst = max(walls)
    ratio = worst / ideal
    return Row(
        id="P3", what=f"album of {IMAGES}, 1 s per photo, C={concurrency}",
        ours=f"{worst:.2f} s (worst of {len(walls)}: {', '.join(f'{w:.2f}' for w in walls)})",
        reference=f"ideal ceil(20/{concurrency}) = {ideal:.0f} s",
        ratio=ratio, goal="<= 1.15 x ideal", met=ratio <= 1.15,
        figures={"walls_s": walls, "ideal_s": ideal, "concurrency": concurrency,
                 "goal_ratio": 1.15, "label": f"P3 C={concurrency}"},
    )
