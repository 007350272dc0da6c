"""`make security`: Schemathesis over the API's OpenAPI description, against the running system.

Every operation gets up to FUZZ_MAX_EXAMPLES (default 100) generated cases in each phase
(coverage, fuzzing, stateful sequences through the links it infers), valid and invalid, as a
signed-up user with a real bearer token. The run fails on any 5xx and on any answer that is
off its description (status, content type, headers, body schema), that accepts invalid data,
ignores its authentication or answers an undeclared method without a 405 and its Allow.
Not checked: `positive_data_acceptance`, because valid-looking bodies are refused by rules
no schema can state (keys outside the caller's own prefix, a key listed twice).

FUZZ_SEED repeats a run. The cases run per operation are printed and written beside the
report (`security-report/` in the session's temporary directory)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import FuzzTarget

pytestmark = pytest.mark.security

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance,negative_data_rejection,"
    "missing_required_header,unsupported_method,allow_header_conformance,use_after_free,"
    "ensure_resource_availability,ignored_auth"
)


def cases_per_operation(ndjson: Path) -> dict[str, collections.Counter[str]]:
    """Cases sent, by operation ("POST /api/albums") and phase, from the run's event log."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in ndjson.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if not event:
            continue
        for case in (event["recorder"].get("cases") or {}).values():
            label = f"{case['value']['method']} {case['value']['path']}"
            counts[label][event["phase"]] += 1
    return counts


def test_the_api_survives_the_fuzzer_within_its_description(
    fuzz_target: FuzzTarget, tmp_path: Path
) -> None:
    report = tmp_path / "security-report"
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        fuzz_target.schema_url,
        "--header",
        f"Authorization: Bearer {fuzz_target.user['token']}",
        "--max-examples",
        os.environ.get("FUZZ_MAX_EXAMPLES", "100"),
        "--checks",
        CHECKS,
        "--workers",
        "1",
        "--no-color",
        "--report",
        "ndjson",
        "--report-dir",
        str(report),
    ]
    if os.environ.get("FUZZ_SEED"):
        command += ["--seed", os.environ["FUZZ_SEED"]]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.security.fuzz_hooks",
        "PYTHONPATH": str(ROOT),
        "FUZZ_IMAGE_PREFIX": fuzz_target.user["prefix"],
    }
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
    )
    counts = cases_per_operation(next(report.glob("*.ndjson")))
    table = "\n".join(
        f"{sum(c.values()):6d}  {label}  ("
        + ", ".join(f"{phase} {n}" for phase, n in c.items())
        + ")"
        for label, c in sorted(counts.items())
    )
    (report / "cases-per-operation.txt").write_text(table + "\n")
    print(f"\n{run.stdout[-6000:]}\ncases per operation:\n{table}")
    paths = requests.get(fuzz_target.schema_url, timeout=5).json()["paths"]
    documented = {
        f"{method.upper()} {path}"
        for path, item in paths.items()
        for method in item
        if method != "parameters"
    }
    assert documented <= set(counts), f"operations never fuzzed: {documented - set(counts)}"
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-4000:]
