"""The results: a Markdown table, a JSON file of figures and ratios, and a chart for the README."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import Row

COLUMNS = ("", "What", "Ours", "Reference", "Dramatiq", "Celery", "Ratio", "Goal", "Met")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _ratio(row: Row) -> str:
    return "-" if row.ratio is None else f"{row.ratio:.2f}"


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = (
            row.id,
            row.what,
            row.ours,
            row.reference,
            row.dramatiq,
            row.celery,
            _ratio(row),
            row.goal,
            "yes" if row.met else "**no**",
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    notes = [f"- **{row.id}**: {row.note}" for row in rows if row.note]
    head = (
        f"# `make bench` results\n\n{meta['date']}, {meta['cores']} cores, RabbitMQ "
        f"{meta['rabbitmq']}, Python {meta['python']}, store {meta['store']}; "
        f"the run took {meta['duration_s']:.0f} s"
        + (" (--quick: a smoke run, not the figures)" if meta["quick"] else "")
        + ".\n\n"
    )
    body = table(rows) + "\n"
    body += (
        "\nHow each figure is taken: the docstring of its module, `bench/p<N>_*.py`. "
        "Ratios under a `>=` goal are ours / theirs; under a `<=` goal, ours / the "
        "reference. `make bench` reruns it all (logs in `var/bench/`).\n"
    )
    if notes:
        body += "\n" + "\n".join(notes) + "\n"
    return head + body


def write(rows: list[Row], meta: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "rows": [asdict(row) for row in rows]}
    (folder / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (folder / "results.md").write_text(markdown(rows, meta))
    chart(rows, folder / "chart.png")


# -- the chart -------------------------------------------------------------------------------


def _goal_limit(row: Row) -> tuple[float, str] | None:
    """The ratio's bound and its direction, read from figures the measurement left."""
    limit = row.figures.get("goal_ratio")
    kind = row.figures.get("goal_kind", "max")
    return (float(limit), str(kind)) if limit is not None else None


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.1, 1, 1.4]})
    _latency(axes[0], next((r for r in rows if r.id == "P1"), None))
    _throughput(axes[1], next((r for r in rows if r.id == "P2"), None))
    _ratios(axes[2], rows)
    fig.suptitle(
        "make bench: ours against raw pika, Dramatiq and Celery on one RabbitMQ", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _latency(ax: Any, row: Row | None) -> None:
    ax.set_title("P1: publish an album of 20 (ms)", fontsize=10)
    if row is None or "latency" not in row.figures:
        ax.axis("off")
        return
    stats = row.figures["latency"]
    names = list(stats)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [stats[n]["p50_s"] * 1000 for n in names], 0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [stats[n]["p99_s"] * 1000 for n in names], 0.4, label="p99")
    ax.set_xticks(list(x), ["ours (HTTP)" if n == "ours" else n for n in names], fontsize=8)
    ax.legend(fontsize=8)


def _throughput(ax: Any, row: Row | None) -> None:
    ax.set_title("P2: no-op drain, 2 processes (msg/s)", fontsize=10)
    if row is None or "rates" not in row.figures:
        ax.axis("off")
        return
    rates = row.figures["rates"]
    names = list(rates)
    colors = ["tab:green" if n == "ours" else "tab:gray" for n in names]
    ax.bar(names, [rates[n] for n in names], color=colors)
    ax.tick_params(axis="x", labelsize=8)


def _ratios(ax: Any, rows: list[Row]) -> None:
    """Every ratio as a share of its goal's bound: under 1 meets a "<=" goal, over 1 a ">=".
    Plotted on a log scale around 1 so both kinds read the same way: green met, red missed."""
    ax.set_title("every goal: ratio / bound (log)", fontsize=10)
    labels, values, colors = [], [], []
    for row in rows:
        goal = _goal_limit(row)
        if goal is None or row.ratio is None or row.ratio <= 0:
            continue
        limit, kind = goal
        share = row.ratio / limit if kind == "max" else limit / row.ratio
        labels.append(row.figures.get("label", row.id))
        values.append(share)
        colors.append("tab:green" if row.met else "tab:red")
    if not values:
        ax.axis("off")
        return
    y = range(len(values))
    ax.barh(list(y), [math.log10(v) for v in values], color=colors)
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ticks = [0.25, 0.5, 1, 2, 4]
    ax.set_xticks([math.log10(t) for t in ticks], [f"{t:g}" for t in ticks])
    ax.set_xlabel("share of the bound (under 1: goal met)", fontsize=8)
