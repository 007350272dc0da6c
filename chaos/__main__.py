"""python -m chaos [--seed N] [--only NAME,...] [--quick]: the fault matrix against real
processes, one Markdown row per fault; exits 1 if any row fails."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from chaos.faults import SCENARIOS, Scenario
from chaos.ledger import Row
from chaos.run import run_row
from chaos.system import ROOT
from dev.rabbit_node import Broker, Cluster, Node

COLUMNS = (
    "fault",
    "albums",
    "images",
    "uploaded",
    "failed",
    "lost",
    "duplicate photos",
    "emails",
    "drained",
    "dead letters",
    "result",
)


def choose(only: str | None, quick: bool) -> list[Scenario]:
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        known = {s.name: s for s in SCENARIOS}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f"unknown rows {unknown}; known: {', '.join(known)}")
        return [known[n] for n in names]
    return [s for s in SCENARIOS if s.quick or not quick]


def table(rows: list[Row], scenarios: dict[str, Scenario]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = (
            f"{r.name}: {scenarios[r.name].what}",
            r.albums,
            r.images,
            r.uploaded,
            r.failed,
            r.lost,
            r.duplicates,
            r.emails,
            "yes" if r.drained else "NO",
            r.dead,
            "PASS" if r.passed else "FAIL",
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def details(rows: list[Row]) -> str:
    out: list[str] = []
    for r in rows:
        for label, items in (("FAIL", r.problems), ("note", r.notes)):
            out.extend(f"- {r.name} (seed {r.seed}) {label}: {item}" for item in items[:12])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock")
    parser.add_argument("--only", help="comma-separated row names")
    parser.add_argument("--quick", action="store_true", help="a short subset, smaller albums")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="logs and report (default var/chaos/<time>)"
    )
    args = parser.parse_args(argv)
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the rows' processes and the
    # node are stopped on the way out instead of left running on their ports.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    scenarios = choose(args.only, args.quick)
    workdir = args.workdir or ROOT / "var" / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"chaos: seed {seed}, {len(scenarios)} rows, logs in {workdir}", flush=True)
    rows = run_all(scenarios, seed, args.quick, workdir)
    report = f"{table(rows, {s.name: s for s in SCENARIOS})}\n\n{details(rows)}\n"
    (workdir / "report.md").write_text(report)
    (workdir / "rows.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    print(report)
    failed = [r.name for r in rows if not r.passed]
    if failed:
        only = ",".join(failed)
        print(f"FAILED: {only}; again: python -m chaos --seed {seed} --only {only}")
    return 1 if failed else 0


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_all(scenarios: list[Scenario], seed: int, quick: bool, workdir: Path) -> list[Row]:
    """Each row on the run's one node, or on its three-node cluster (started only if a row
    needs it: it takes some 20-40 s to boot and join)."""
    brokers: dict[bool, Broker] = {}
    rows = []
    began = time.monotonic()
    try:
        for scenario in scenarios:
            if scenario.cluster not in brokers:
                broker = (
                    Cluster(workdir / "cluster") if scenario.cluster else Node(workdir / "node")
                )
                brokers[scenario.cluster] = broker
                broker.start()
            row = run_row(brokers[scenario.cluster], scenario, seed, quick, workdir)
            rows.append(row)
            verdict = "PASS" if row.passed else "FAIL " + "; ".join(row.problems[:3])
            print(f"  {row.name}: {verdict} ({row.seconds:.0f} s)", flush=True)
    finally:
        for broker in brokers.values():
            broker.kill()  # its data goes too: no need to wait for a clean stop
            broker.remove_data()
    print(f"chaos: {len(rows)} rows in {time.monotonic() - began:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
