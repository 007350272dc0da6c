"""How the Makefile installs (issue 13 item 2): `make run` from run.lock and `make test` from
dev.lock, both with --require-hashes, by uv, which pip installs first from uv.lock with its
hashes; a changed lock reinstalls; `make test` audits; PYTHON defaults to python3 and an older
Python is refused with a clear message. Checked with `make -n` (print, run nothing) on a copy of
the Makefile, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INPUTS_TIME = 1_000_000_000
INSTALL_TIME = INPUTS_TIME + 3600


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The Makefile, pyproject.toml and the locks in a scratch directory, its venv installed
    (stamped) after every lock was written."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # Only its presence and age matter to make: `make -n` runs nothing.
    (bin_dir / "python").write_text("")
    # Every stamp newer than every input (explicit times: no two writes share a clock tick).
    for path in [
        tmp_path / "pyproject.toml",
        bin_dir / "python",
        *(tmp_path / "requirements").iterdir(),
    ]:
        os.utime(path, (INPUTS_TIME, INPUTS_TIME))
    for stamp in (".uv-installed", ".run-installed", ".dev-installed"):
        (tmp_path / ".venv" / stamp).touch()
        os.utime(tmp_path / ".venv" / stamp, (INSTALL_TIME, INSTALL_TIME))
    return tmp_path


def _change(path: Path) -> None:
    """A lock rewritten after the venv was installed."""
    os.utime(path, (INSTALL_TIME + 60, INSTALL_TIME + 60))


def _dry_run(tree: Path, *args: str) -> str:
    done = subprocess.run(
        ["make", "-n", *args], cwd=tree, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _installs(commands: str) -> list[str]:
    return [line for line in commands.splitlines() if "pip install" in line]


def test_an_installed_venv_is_not_reinstalled(tree: Path) -> None:
    assert _installs(_dry_run(tree, "run")) == []


def test_make_run_installs_the_run_lock_with_hashes_when_it_changes(tree: Path) -> None:
    _change(tree / "requirements" / "run.lock")
    installs = _installs(_dry_run(tree, "run"))
    assert any(
        "--require-hashes" in line and "requirements/run.lock" in line for line in installs
    ), installs
    assert not any("dev.lock" in line for line in installs), installs


def test_make_test_installs_the_dev_lock_with_hashes_when_it_changes(tree: Path) -> None:
    _change(tree / "requirements" / "dev.lock")
    installs = _installs(_dry_run(tree, "test"))
    assert any(
        "--require-hashes" in line and "requirements/dev.lock" in line for line in installs
    ), installs


def test_no_install_resolves_outside_a_lock(tree: Path) -> None:
    """Every `pip install` takes a lock with hashes, or the project itself without its deps."""
    for path in ("run.lock", "dev.lock"):
        _change(tree / "requirements" / path)
    for line in _installs(_dry_run(tree, "run", "test")):
        assert "--require-hashes" in line or "--no-deps" in line, line


def test_the_locks_are_installed_by_the_venvs_uv_into_the_venv(tree: Path) -> None:
    _change(tree / "requirements" / "dev.lock")
    installs = _installs(_dry_run(tree, "test"))
    assert installs, "a changed dev.lock installs nothing"
    for line in installs:
        assert line.startswith(".venv/bin/uv pip install "), line
        assert "--python .venv/bin/python" in line, line


def test_the_project_is_installed_editable_by_the_locked_setuptools(tree: Path) -> None:
    _change(tree / "requirements" / "run.lock")
    project = [line for line in _installs(_dry_run(tree, "run")) if line.endswith(" -e .")]
    assert len(project) == 1, project
    assert "--no-deps" in project[0] and "--no-build-isolation" in project[0], project


def test_a_new_venv_gets_uv_from_its_lock_with_hashes_first(tree: Path) -> None:
    (tree / ".venv" / ".uv-installed").unlink()
    installs = _installs(_dry_run(tree, "venv"))
    assert (
        installs[0] == ".venv/bin/pip install -q --require-hashes --no-deps -r requirements/uv.lock"
    )
    assert any("uv pip install" in line and "requirements/dev.lock" in line for line in installs)


def test_a_changed_uv_lock_reinstalls_uv_then_the_lock(tree: Path) -> None:
    _change(tree / "requirements" / "uv.lock")
    installs = _installs(_dry_run(tree, "run"))
    assert [line.split()[-1] for line in installs] == [
        "requirements/uv.lock",
        "requirements/run.lock",
        ".",
    ], installs


def test_make_lock_cuts_uv_lock_from_all_lock(tree: Path) -> None:
    uv_lock = [line for line in _dry_run(tree, "lock").splitlines() if "uv.lock" in line]
    assert uv_lock, "make lock does not write requirements/uv.lock"
    assert "-c requirements/all.lock requirements/uv.in" in uv_lock[0], uv_lock
    assert "--generate-hashes" in uv_lock[0], uv_lock


def test_make_test_runs_the_audit(tree: Path) -> None:
    assert "dev.audit" in _dry_run(tree, "test")


def test_make_test_type_checks_everything_beside_the_tests(tree: Path) -> None:
    """mypy over TYPED runs beside pytest (dev/alongside.py), which reports both and fails
    when either fails, instead of before it."""
    commands = _dry_run(tree, "test").replace("\\\n", " ")
    [line] = [line for line in commands.splitlines() if "dev.alongside" in line]
    assert '--beside ".venv/bin/mypy shared services dev bench chaos tests"' in line, line
    assert line.split(" -- ")[1].split() == [".venv/bin/pytest", "-q", "-m", '"not', 'slow"']
    assert not [c for c in commands.splitlines() if c.startswith(".venv/bin/mypy")], commands


def test_python_defaults_to_python3() -> None:
    assert "PYTHON ?= python3\n" in (ROOT / "Makefile").read_text()


def test_a_python_older_than_3_11_is_refused_clearly(tree: Path) -> None:
    shutil.rmtree(tree / ".venv")
    old_python = tree / "python3.10"
    old_python.write_text("#!/bin/sh\necho 3.10\n")
    old_python.chmod(0o755)
    done = subprocess.run(
        ["make", "venv", f"PYTHON={old_python}"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "3.11 or newer" in done.stderr + done.stdout
    assert not (tree / ".venv").exists()


# -- the browser (issue 15): installed by `make test` when missing, never a reason to skip ----


def _browser(tree: Path, chromium: Path, apt_get: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "browser", f"CHROMIUM={chromium}", f"APT_GET={apt_get}"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _fake_apt_get(tree: Path, chromium: Path) -> Path:
    """An apt-get that logs its arguments and, on install, puts an executable at `chromium`."""
    script = tree / "apt-get"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {tree}/apt.log\n'
        f'[ "$1" = install ] && printf "#!/bin/sh\\n" > {chromium} '
        f"&& chmod +x {chromium}\nexit 0\n"
    )
    script.chmod(0o755)
    return script


def test_make_test_needs_the_browser(tree: Path) -> None:
    commands = _dry_run(tree, "test", f"CHROMIUM={tree}/no-chromium")
    assert "install -y -qq chromium" in commands
    assert f"CHROMIUM={tree}/no-chromium" in commands


def test_a_missing_chromium_is_installed_from_debians_packages(tree: Path) -> None:
    chromium = tree / "chromium"
    done = _browser(tree, chromium, _fake_apt_get(tree, chromium))
    assert done.returncode == 0, done.stderr
    assert "install -y -qq chromium" in (tree / "apt.log").read_text()


def test_a_chromium_that_cannot_be_installed_stops_make_saying_how(tree: Path) -> None:
    done = _browser(tree, tree / "no-chromium", "false")
    assert done.returncode != 0
    assert "apt-get install chromium" in done.stderr, done.stderr


def test_a_present_chromium_installs_nothing(tree: Path) -> None:
    chromium = tree / "chromium"
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(0o755)
    done = _browser(tree, chromium, _fake_apt_get(tree, chromium))
    assert done.returncode == 0, done.stderr
    assert not (tree / "apt.log").exists()


def test_recipes_keep_compiled_modules_where_the_environment_says_not_to(tree: Path) -> None:
    """CI's image sets PYTHONDONTWRITEBYTECODE; under it every process a test starts compiled
    Flask, SQLAlchemy and pika from source again. make's recipes run without it."""
    probe = 'probe: ; @echo "[$${PYTHONDONTWRITEBYTECODE-unset}]"'
    done = subprocess.run(
        ["make", "--no-print-directory", "--eval", probe, "probe"],
        cwd=tree,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[unset]"


@pytest.mark.parametrize(
    ("args", "workers"),
    [((), " -n auto "), (("UNIT_WORKERS=1",), " -n 1 ")],
    ids=["every core", "UNIT_WORKERS"],
)
def test_the_unit_tests_run_on_every_core_or_as_many_workers_as_set(
    tree: Path, args: tuple[str, ...], workers: str
) -> None:
    """On every core by default; a container's CPU quota is not what xdist counts, so
    UNIT_WORKERS says how many."""
    commands = _dry_run(tree, "test-unit", *args).splitlines()
    (pytest_line,) = [line for line in commands if line.startswith(".venv/bin/pytest ")]
    assert workers in pytest_line, pytest_line
