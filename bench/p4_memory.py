"""P4: the uploader's peak RSS publishing 20 x 10 MB images against 20 x 100 KB images.

A fresh uploader process per album (default concurrency, 4), so each VmHWM is that album's own.
The images go S3 (moto) -> uploader -> Graph simulator; a streaming uploader holds a few
chunks per upload, one that buffers holds whole images (4 x 10 MB at concurrency 4).
"""

from __future__ import annotations

from bench.common import Broker, Options, Row, log
from bench.p3_concurrency import time_album, uploader_ready
from bench.system import System, database, rss_peak_kb
from dev.images import png_of_size
from shared.store import AlbumState

IMAGES = 20
SIZES = {"100 KB": 100_000, "10 MB": 10_000_000}


def run(opts: Options, broker: Broker) -> list[Row]:
    peaks: dict[str, int] = {}
    walls: dict[str, float] = {}
    with broker.vhost("p4") as url, database(opts, "p4") as db_url:
        system = System("p4", url, db_url)
        try:
            system.start_stand_ins()
            system.start_api()
            user = system.create_user("bench-p4@example.com")
            for label, size in SIZES.items():
                body = png_of_size(size)
                keys = system.put_images(user["prefix"], body, IMAGES, f"p4-{size}")
                uploader_ready(system, url, 4)
                wall, album = time_album(system, user["token"], keys, f"p4 {label}")
                if album["state"] != AlbumState.DONE:
                    raise RuntimeError(
                        f"album of {label} ended {album['state']}: {album['counts']}"
                    )
                peaks[label] = rss_peak_kb(system.procs["uploader"].pid)
                _check_received(system, len(body))
                walls[label] = wall
                log(f"P4: {label}: peak RSS {peaks[label] / 1024:.1f} MiB, album in {wall:.1f} s")
                system.stop("uploader")
        finally:
            system.stop_all()
    return [_row(peaks, walls)]


def _check_received(system: System, size: int) -> None:
    """The simulator got every image whole: a peak that low must not come from short bodies."""
    photos = system.http.get(f"{system.graph_url}/_sim/photos", timeout=10).json()["photos"]
    whole = sum(1 for photo in photos if photo.get("size") == size)
    if whole < IMAGES:
        raise RuntimeError(
            f"the Graph simulator holds {whole} photos of {size} bytes, not {IMAGES}"
        )


def _row(peaks: dict[str, int], walls: dict[str, float]) -> Row:
    big, small = peaks["10 MB"], peaks["100 KB"]
    ratio = big / small
    return Row(
        id="P4",
        what=f"uploader peak RSS (VmHWM), {IMAGES} x 10 MB vs {IMAGES} x 100 KB",
        ours=f"{big / 1024:.1f} MiB",
        reference=f"100 KB images: {small / 1024:.1f} MiB",
        ratio=ratio,
        goal="<= 1.25",
        met=ratio <= 1.25,
        figures={"peak_kb": peaks, "album_s": walls, "goal_ratio": 1.25, "label": "P4 RSS"},
    )
