"""`python -m services.api create-user` (and the other user commands) load the store, not the
web app: each e2e test and `make run`'s seed start one, and Flask's app doubled its CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("flask", "waitress", "services.api.app", "prometheus_client")


def test_the_user_commands_import_no_web_app() -> None:
    code = (
        "import sys, services.api.__main__\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
