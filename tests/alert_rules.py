"""Runs deploy/prometheus/alerts.yml through promtool: `check rules`, and `test rules` over
series a test gives (promtool's unit-test format: input series, then the alerts expected to
fire at a time, or none)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"


def promtool() -> str:
    """promtool's path; the test skips where Debian's `prometheus` package is not installed
    (`make test` installs it)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def check_rules() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )


def evaluate(tmp_path: Path, cases: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """Evaluate the rules over each case ({"interval", "input_series", "alert_rule_test"})."""
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": cases}
    path = tmp_path / "alert-tests.yml"
    path.write_text(yaml.safe_dump(spec))
    return subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )


def fired(name: str, at: str, summary: str, severity: str) -> dict[str, Any]:
    """The expectation that alert `name` fires (once) at `at`."""
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {"exp_labels": {"severity": severity}, "exp_annotations": {"summary": summary}}
        ],
    }


def silent(name: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


def summary_of(name: str) -> str:
    """The rule's summary, as the file says it."""
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    return str(next(rule for rule in rules if rule["alert"] == name)["annotations"]["summary"])
