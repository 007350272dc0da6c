"""`make test`'s mypy beside pytest (dev/alongside.py, issue 13): the two run at once where a core
is spare, the background one's output comes whole after the foreground's, and either failing
fails the run; on one core they run in turn."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from dev import alongside

PY = shlex.quote(sys.executable)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _waits_for(path: Path, seconds: float = 10) -> str:
    """A command that succeeds once `path` exists, and fails (3) when it is still missing after
    `seconds`: it can only pass if the other command runs at the same time."""
    code = (
        "import os, sys, time\n"
        f"end = time.monotonic() + {seconds}\n"
        f"while not os.path.exists({str(path)!r}) and time.monotonic() < end:\n"
        "    time.sleep(0.01)\n"
        f"sys.exit(0 if os.path.exists({str(path)!r}) else 3)\n"
    )
    return f"{PY} -c {shlex.quote(code)}"


def _run(capfd: pytest.CaptureFixture[str], beside: str, *main: str) -> tuple[int, str]:
    code = alongside.main(["--beside", beside, "--", *main])
    return code, capfd.readouterr().out


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alongside, "usable_cores", lambda: 2)


@pytest.mark.usefixtures("two_cores")
def test_the_two_run_at_once(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    flag = tmp_path / "main-started"
    code, _ = _run(capfd, _waits_for(flag), *_python(f"open({str(flag)!r}, 'w').close()"))
    assert code == 0


@pytest.mark.usefixtures("two_cores")
def test_the_background_output_comes_whole_after_the_foreground(
    capfd: pytest.CaptureFixture[str],
) -> None:
    code, out = _run(
        capfd, f"{PY} -c \"print('types line 1'); print('types line 2')\"", "echo", "tests done"
    )
    assert code == 0
    header = out.index("(ran beside the tests): exit 0")
    assert out.index("tests done") < header < out.index("types line 1\ntypes line 2\n")


@pytest.mark.usefixtures("two_cores")
def test_a_failing_background_command_fails_the_run(capfd: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capfd, f"{PY} -c \"print('error: bad type'); raise SystemExit(1)\"", "true")
    assert code == 1
    assert "exit 1" in out and "error: bad type" in out


@pytest.mark.usefixtures("two_cores")
def test_a_failing_foreground_command_fails_the_run(capfd: pytest.CaptureFixture[str]) -> None:
    code, _ = _run(capfd, "true", *_python("raise SystemExit(5)"))
    assert code == 5


def test_one_core_runs_them_in_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(alongside, "usable_cores", lambda: 1)
    flag = tmp_path / "main-started"
    # Run in turn, the background command waits in vain: the foreground has not started.
    code, out = _run(capfd, _waits_for(flag, 0.5), *_python(f"open({str(flag)!r}, 'w').close()"))
    assert code == 3
    assert flag.exists() and "ran beside" not in out
