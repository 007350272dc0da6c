"""P8: the bytes. 20 x 10 MB through the uploader to the Graph stand-in at full speed (no added
latency), against a plain streaming copy of the same objects to the same stand-in at the same
concurrency (bench/p8_copy.py), in the same run.

Ours: an album of the 20 objects posted to the API, timed from the POST to the album's
`settled_at` in the store (P3's clock), with the uploader's CPU (the process and its children,
from /proc) over that album. The copy: its own process, timed and its CPU read inside it for
the copy alone (imports and clients made before; ours gets a warm-up album of four photos
first, for the same reason). Each runs 3 times (1 with --quick), alternating; the ratios are
of the totals: MB/s ours / copy (goal >= 0.95), CPU seconds per GB ours / copy (goal <= 1.1).
S3 (moto) and the Graph simulator are the same processes for both and are not counted in
either's CPU.
"""

from __future__ import annotations

import json
import subprocess
import time

from bench.common import PY, ROOT, Broker, Options, Row, log
from bench.p2_consume import cpu_seconds
from bench.p3_concurrency import time_album, uploader_ready
from bench.system import BUCKET, PAGE_ID, PAGE_TOKEN, System, database
from dev.images import png_of_size
from shared.config.settings import CommonSettings

IMAGES = 20
SIZE = 10_000_000
CONCURRENCY = 4  # the uploader's default
SPEED_GOAL, CPU_GOAL = 0.95, 1.1


def run(opts: Options, broker: Broker) -> list[Row]:
    rounds = 1 if opts.quick else 3
    ours: list[tuple[float, float]] = []
    copy: list[tuple[float, float]] = []
    with broker.vhost("p8") as url, database(opts, "p8") as db_url:
        system = System("p8", url, db_url)
        try:
            system.start_stand_ins()
            system.start_api()
            user = system.create_user("bench-p8@example.com")
            body = png_of_size(SIZE)
            keys = system.put_images(user["prefix"], body, IMAGES, "p8")
            uploader_ready(system, url, CONCURRENCY)
            # The copy makes its clients before its clock starts; so does ours, here: the
            # uploader's S3 client and connection pools come with its first album.
            _ours(system, user["token"], keys[:CONCURRENCY], -1)
            for n in range(rounds):
                ours.append(_ours(system, user["token"], keys, n))
                copy.append(_copy(system, keys, len(body) * IMAGES))
                log(
                    f"P8: round {n + 1}: ours {ours[-1][0]:.2f} s ({ours[-1][1]:.2f} s CPU), "
                    f"copy {copy[-1][0]:.2f} s ({copy[-1][1]:.2f} s CPU)"
                )
        finally:
            system.stop_all()
    return _rows(ours, copy)


def _ours(system: System, token: str, keys: list[str], n: int) -> tuple[float, float]:
    pid = system.procs["uploader"].pid
    cpu = cpu_seconds([pid])
    elapsed, album = time_album(system, token, keys, f"p8 {n}")
    if album["state"] != "done":
        raise RuntimeError(f"album {n} ended {album['state']}: {album['counts']}")
    return elapsed, cpu_seconds([pid]) - cpu


def _copy(system: System, keys: list[str], total: int) -> tuple[float, float]:
    job = {
        "s3": system.env["S3_ENDPOINT_URL"],
        "bucket": BUCKET,
        "keys": keys,
        "graph": system.graph_url,
        "version": CommonSettings.model_fields["graph_api_version"].default,
        "page_id": PAGE_ID,
        "token": PAGE_TOKEN,
        "concurrency": CONCURRENCY,
    }
    out = subprocess.run(
        [PY, "-m", "bench.p8_copy"],
        cwd=ROOT,
        env=system.env,
        check=True,
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    if found["bytes"] != total:
        raise RuntimeError(f"the copy moved {found['bytes']} bytes")
    time.sleep(0.5)  # the stand-ins' last writes, before the next round's clock
    return float(found["elapsed_s"]), float(found["cpu_s"])


def _rows(ours: list[tuple[float, float]], copy: list[tuple[float, float]]) -> list[Row]:
    gb = IMAGES * SIZE * len(ours) / 1e9
    mb_s = {
        name: IMAGES * SIZE * len(runs) / 1e6 / sum(t for t, _ in runs)
        for name, runs in (("ours", ours), ("copy", copy))
    }
    cpu_gb = {name: sum(c for _, c in runs) / gb for name, runs in (("ours", ours), ("copy", copy))}
    speed, cpu = mb_s["ours"] / mb_s["copy"], cpu_gb["ours"] / cpu_gb["copy"]
    each = {
        "ours_s": [round(t, 3) for t, _ in ours],
        "copy_s": [round(t, 3) for t, _ in copy],
        "ours_cpu_s": [round(c, 3) for _, c in ours],
        "copy_cpu_s": [round(c, 3) for _, c in copy],
    }
    what = (
        f"{IMAGES} x 10 MB to the Graph stand-in, no latency, C={CONCURRENCY}, {len(ours)} rounds"
    )
    return [
        Row(
            id="P8",
            what=f"{what}: throughput",
            ours=f"{mb_s['ours']:.1f} MB/s [{', '.join(f'{t:.2f} s' for t, _ in ours)}]",
            reference=f"plain streaming copy: {mb_s['copy']:.1f} MB/s "
            f"[{', '.join(f'{t:.2f} s' for t, _ in copy)}]",
            ratio=speed,
            goal=f">= {SPEED_GOAL} x the copy",
            met=speed >= SPEED_GOAL,
            figures={
                "mb_s": mb_s,
                "runs": each,
                "goal_ratio": SPEED_GOAL,
                "goal_kind": "min",
                "label": "P8 MB/s / copy",
            },
        ),
        Row(
            id="P8",
            what=f"{what}: CPU per GB moved",
            ours=f"{cpu_gb['ours']:.2f} CPU s/GB (uploader)",
            reference=f"plain streaming copy: {cpu_gb['copy']:.2f} CPU s/GB",
            ratio=cpu,
            goal=f"<= {CPU_GOAL} x the copy",
            met=cpu <= CPU_GOAL,
            figures={
                "cpu_s_per_gb": cpu_gb,
                "runs": each,
                "goal_ratio": CPU_GOAL,
                "label": "P8 CPU/GB / copy",
            },
        ),
    ]
