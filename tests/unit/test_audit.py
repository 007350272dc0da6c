"""`make audit`'s verdicts (dev/audit.py) on pip-audit's output as pip-audit prints it, canned:
an advisory fails, an unreachable service is "not audited" (a failure for `make audit`, one
line and no failure for `make test`), and a run that audited nothing never passes as clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dev.audit import Outcome, fake_pip_audit, judge, main

LOCK = "requirements/dev.lock"

#: pip-audit 2.10 with OSV out of reach: no JSON, a traceback ending in requests' error.
DNS_FAILURE = Outcome(
    1,
    "",
    (
        "Traceback (most recent call last):\n"
        "  ...\n"
        "requests.exceptions.ConnectionError: "
        "HTTPSConnectionPool(host='api.osv.dev', port=443): "
        'Max retries exceeded with url: /v1/query (Caused by NameResolutionError("HTTPSConnection('
        "host='api.osv.dev', port=443): Failed to resolve 'api.osv.dev' "
        "([Errno -2] Name or service "
        'not known)"))\n'
    ),
)
REFUSED = Outcome(
    1,
    "",
    "requests.exceptions.ConnectionError: HTTPSConnectionPool(host="
    "'api.osv.dev', port=443): Max retries exceeded with url: /v1/query "
    "(Caused by NewConnectionError('[Errno 111] Connection refused'))\n",
)
#: pip-audit 2.10's PyPI service where PyPI's JSON API answers 404: every package skipped, exit 0.
ALL_SKIPPED = Outcome(
    0,
    json.dumps(
        {
            "dependencies": [
                {
                    "name": "requests",
                    "skip_reason": "Dependency not found on PyPI and could not be "
                    "audited: requests (2.31.0)",
                },
                {
                    "name": "flask",
                    "skip_reason": "Dependency not found on PyPI and could not be audited: "
                    "flask (3.0.0)",
                },
            ],
            "fixes": [],
        }
    ),
    "",
)
ADVISORY = Outcome(
    1,
    json.dumps(
        {
            "dependencies": [
                {"name": "flask", "version": "3.1.3", "vulns": []},
                {
                    "name": "requests",
                    "version": "2.31.0",
                    "vulns": [
                        {
                            "id": "GHSA-9wx4-h78v-vm56",
                            "fix_versions": ["2.32.0"],
                            "aliases": ["CVE-2024-35195"],
                            "description": "verify=False sticks to the session's connection",
                        }
                    ],
                },
            ],
            "fixes": [],
        }
    ),
    "",
)
CLEAN = Outcome(
    0,
    json.dumps(
        {
            "dependencies": [
                {"name": "flask", "version": "3.1.3", "vulns": []},
                {"name": "requests", "version": "2.34.2", "vulns": []},
            ],
            "fixes": [],
        }
    ),
    "",
)
CRASH = Outcome(2, "", "usage: pip-audit [-h] ...\npip-audit: error: unrecognized arguments\n")


@pytest.mark.parametrize("outcome", [DNS_FAILURE, REFUSED], ids=["dns", "refused"])
def test_an_unreachable_service_skips_make_test_with_one_line(
    outcome: Outcome, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--allow-unreachable", LOCK], runner=fake_pip_audit(outcome)) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pip-audit: vulnerability service unreachable (")
    assert lines[0].endswith("); not audited")


def test_the_unreachable_line_names_the_cause() -> None:
    assert "Failed to resolve 'api.osv.dev'" in judge(DNS_FAILURE).message
    assert "Connection refused" in judge(REFUSED).message


@pytest.mark.parametrize("outcome", [DNS_FAILURE, ALL_SKIPPED], ids=["dns", "all-skipped"])
def test_make_audit_alone_fails_when_nothing_was_audited(outcome: Outcome) -> None:
    assert main([LOCK], runner=fake_pip_audit(outcome)) == 1


def test_a_run_that_skipped_every_package_is_not_clean() -> None:
    """pip-audit itself exits 0 here: the wrapper must not read that as "no advisory"."""
    verdict = judge(ALL_SKIPPED)
    assert verdict.kind == "unreachable"
    assert verdict.message.endswith("; not audited")


@pytest.mark.parametrize("allow", [True, False])
def test_an_advisory_fails_the_build(allow: bool, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--allow-unreachable", LOCK] if allow else [LOCK]
    assert main(args, runner=fake_pip_audit(ADVISORY)) == 1
    err = capsys.readouterr().err
    assert "requests 2.31.0: GHSA-9wx4-h78v-vm56 (fixed in 2.32.0)" in err
    assert "flask" not in err


def test_a_clean_audit_passes_and_says_how_many_packages() -> None:
    verdict = judge(CLEAN)
    assert verdict.kind == "clean"
    assert verdict.exit_code(allow_unreachable=False) == 0
    assert "2 packages" in verdict.message


def test_a_broken_pip_audit_is_not_mistaken_for_an_unreachable_service() -> None:
    verdict = judge(CRASH)
    assert verdict.kind == "broken"
    assert verdict.exit_code(allow_unreachable=True) == 1
    assert "unrecognized arguments" in verdict.message


def test_the_lock_is_handed_to_pip_audit() -> None:
    seen: list[Path] = []

    def runner(lock: Path) -> Outcome:
        seen.append(lock)
        return CLEAN

    assert main(["requirements/prod.lock"], runner=runner) == 0
    assert seen == [Path("requirements/prod.lock")]
