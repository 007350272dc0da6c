"""python -m bench [--only P1,P3] [--quick]: run the measurements, print and write the table.

The full run (no --only, no --quick) writes the committed results under bench/results/; a
partial or quick run writes to var/bench/results/ so a smoke run never replaces the figures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import version

from bench import report
from bench.common import RESULTS, VAR, Broker, Options, Row, log

MEASUREMENTS = {
    "P1": "bench.p1_publish",
    "P2": "bench.p2_consume",
    "P3": "bench.p3_concurrency",
    "P4": "bench.p4_memory",
    "P5": "bench.p5_retry",
    "P6": "bench.p6_restart",
    "P7": "bench.p7_backlog",
    "P8": "bench.p8_bytes",
    "P9": "bench.p9_busy",
    "P10": "bench.p10_history",
}
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _options(argv: list[str] | None) -> tuple[Options, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. P1,P3")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the services' store: a SQLite file under var/bench (the default, "
        "as `make run`), or PostgreSQL at POSTGRES_ADMIN_URL",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of our processes under var/bench/",
    )
    args = parser.parse_args(argv)
    only = [part.strip().upper() for part in args.only.split(",") if part.strip()]
    unknown = set(only) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement {sorted(unknown)}; known: {list(MEASUREMENTS)}")
    amqp_url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    host = amqp_url.split("@")[-1].split("/")[0].split(":")[0] or "127.0.0.1"
    opts = Options(
        quick=args.quick,
        amqp_url=amqp_url,
        management_url=os.environ.get("RABBITMQ_MANAGEMENT_URL", f"http://{host}:15672"),
        store=args.store,
        postgres_url=os.environ.get("POSTGRES_ADMIN_URL", DEFAULT_PG_URL),
        profile=args.profile,
    )
    return opts, only or list(MEASUREMENTS)


def _meta(opts: Options, broker: Broker, duration_s: float) -> dict[str, object]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(duration_s, 1),
        "quick": opts.quick,
        # A full run measures P1 and P3 on PostgreSQL too, and P9 only there (their rows say).
        "store": opts.store if opts.quick else f"{opts.store}, P1 and P3 on postgres too",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "rabbitmq": broker.version(),
        "versions": {name: version(name) for name in ("pika", "dramatiq", "celery", "kombu")},
    }


def main(argv: list[str] | None = None) -> int:
    opts, selected = _options(argv)
    broker = Broker(opts.amqp_url, opts.management_url)
    VAR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows: list[Row] = []
    errors = 0
    for key in selected:
        log(f"{key}: starting")
        began = time.monotonic()
        try:
            rows.extend(importlib.import_module(MEASUREMENTS[key]).run(opts, broker))
        except Exception as exc:  # report it in the table and go on with the others
            traceback.print_exc()
            rows.append(Row.failed(key, MEASUREMENTS[key], exc))
            errors += 1
        log(f"{key}: done in {time.monotonic() - began:.0f} s")
    meta = _meta(opts, broker, time.monotonic() - started)
    full = not opts.quick and selected == list(MEASUREMENTS)
    folder = RESULTS if full else VAR / "results"
    report.write(rows, meta, folder)
    print()
    print(report.markdown(rows, meta))
    print(f"written to {folder.relative_to(report_root())}/results.{{md,json}} and chart.png")
    return 1 if errors else 0


def report_root() -> os.PathLike[str]:
    from bench.common import ROOT

    return ROOT


if __name__ == "__main__":
    sys.exit(main())
