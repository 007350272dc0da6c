"""The README's dashboard picture: each panel of deploy/grafana/album-publisher.json, its
queries run by a real Prometheus over a test run and drawn with matplotlib. Not Grafana: the
same queries and panel layout, drawn by us (matplotlib comes with `.[bench]`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "album-publisher.json"


def query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": "1s"}
    response = requests.get(f"{prometheus}/api/v1/query_range", timeout=10, params=params)
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def legend(labels: dict[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k not in ("job", "instance", "__name__")}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"


def draw(prometheus: str, start: float, end: float, out: Path) -> None:
    """Query every panel over [start, end] and write the grid of charts to `out` (PNG)."""
    import matplotlib  # noqa: PLC0415 - only this tool needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = json.loads(DASHBOARD.read_text())["panels"]
    rows = (len(panels) + 2) // 3
    figure, axes = plt.subplots(rows, 3, figsize=(18, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.set_title(panel["title"], fontsize=10)
        for target in panel["targets"]:
            for series in query_range(prometheus, target["expr"], start, end):
                times = [float(t) - start for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                ax.plot(times, values, label=legend(series["metric"]), linewidth=1.4)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("seconds into the run", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle(
        "Album publisher: the dashboard's queries over a test run "
        "(drawn with matplotlib, not Grafana)",
        fontsize=12,
    )
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)
