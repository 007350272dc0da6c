"""`make audit`: pip-audit over a lock file, with a verdict that tells "no known advisory" from
"not audited".

pip-audit alone cannot be trusted to fail when it audited nothing: where PyPI's JSON API is
out of reach it skips every package ("Dependency not found on PyPI and could not be audited")
and exits 0. So its JSON is read here: an advisory fails, and a run that audited no package, or
could not reach the vulnerability service at all, is "not audited". `make audit` fails on that;
`make test` (--allow-unreachable) prints one line and goes on, since a machine without the
service must still be able to run the tests.

    python -m dev.audit [--allow-unreachable] [requirements/dev.lock]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: OSV aggregates the Python advisory database and GitHub's advisories.
SERVICE = "osv"
TIMEOUT_S = 15
DEFAULT_LOCK = Path("requirements/dev.lock")

#: What requests/urllib3 say when the service cannot be reached at all, the most telling first.
_UNREACHABLE = [
    re.compile(p)
    for p in (
        r"Failed to resolve '[^']+'",
        r"Connection refused",
        r"Network is unreachable",
        r"No route to host",
        r"Read timed out",
        r"Connection to \S+ timed out",
        r"Temporary failure in name resolution",
        r"Name or service not known",
        r"Max retries exceeded with url",
    )
]

Kind = Literal["clean", "vulnerable", "unreachable", "broken"]


@dataclass(frozen=True)
class Outcome:
    """What a pip-audit run left: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    message: str

    def exit_code(self, allow_unreachable: bool) -> int:
        if self.kind == "clean" or (self.kind == "unreachable" and allow_unreachable):
            return 0
        return 1


Runner = Callable[[Path], Outcome]


def run_pip_audit(lock: Path) -> Outcome:
    """pip-audit over the pins of `lock` as written: nothing is installed or resolved."""
    command = [
        str(Path(sys.executable).with_name("pip-audit")),
        "--requirement",
        str(lock),
        "--require-hashes",
        "--disable-pip",
        "--vulnerability-service",
        SERVICE,
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--timeout",
        str(TIMEOUT_S),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return Outcome(done.returncode, done.stdout, done.stderr)


def fake_pip_audit(outcome: Outcome) -> Runner:
    """A runner that answers `outcome` whatever the lock: pip-audit's output, canned."""
    return lambda lock: outcome


def judge(outcome: Outcome) -> Verdict:
    report = _report(outcome.stdout)
    if report is None:
        return _without_report(outcome)
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    if vulnerable:
        lines = "\n".join(_describe(d) for d in vulnerable)
        return Verdict(
            "vulnerable", f"pip-audit: known advisories in {len(vulnerable)} package(s):\n{lines}"
        )
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        reason = deps[0]["skip_reason"] if deps else "no package in the lock"
        return Verdict(
            "unreachable",
            f"pip-audit: vulnerability service unreachable ({_shorten(reason)}); not audited",
        )
    skipped = len(deps) - len(audited)
    note = f" ({skipped} skipped)" if skipped else ""
    return Verdict("clean", f"pip-audit: no known advisory in {len(audited)} packages{note}")


def _report(stdout: str) -> dict[str, Any] | None:
    try:
        report = json.loads(stdout)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _without_report(outcome: Outcome) -> Verdict:
    for pattern in _UNREACHABLE:
        found = pattern.search(outcome.stderr)
        if found:
            return Verdict(
                "unreachable",
                f"pip-audit: vulnerability service unreachable ({found.group(0)}); not audited",
            )
    tail = "\n".join(outcome.stderr.strip().splitlines()[-5:]) or "(nothing on stderr)"
    return Verdict("broken", f"pip-audit failed (exit {outcome.returncode}):\n{tail}")


def _describe(dep: dict[str, Any]) -> str:
    ids = ", ".join(
        f"{v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})" for v in dep["vulns"]
    )
    return f"  {dep['name']} {dep.get('version', '?')}: {ids}"


def _shorten(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


def main(argv: list[str] | None = None, runner: Runner = run_pip_audit) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", nargs="?", type=Path, default=DEFAULT_LOCK)
    parser.add_argument(
        "--allow-unreachable",
        action="store_true",
        help="exit 0 when the vulnerability service cannot be reached",
    )
    args = parser.parse_args(argv)
    verdict = judge(runner(args.lock))
    print(verdict.message, file=sys.stdout if verdict.kind == "clean" else sys.stderr)
    return verdict.exit_code(args.allow_unreachable)


if __name__ == "__main__":
    sys.exit(main())
