"""The supply chain as pyproject.toml and requirements/ declare it (issue 11, issue 13 item 2):
every install comes from a lock with hashes that holds what pyproject asks for, the minimums
sit past the advisories docs/supply-chain.md lists, the tools are pinned exactly, and nothing
reaches into moto's internals."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
PROJECT = "album-publisher"

#: Each lock and the extras it is made of (besides the core dependencies).
LOCK_EXTRAS = {
    "prod.lock": (),
    "run.lock": ("run",),
    "dev.lock": ("run", "dev"),
    "security.lock": ("run", "dev", "security"),
    "bench.lock": ("run", "bench"),
}

#: The lowest release of each package past its known advisories (docs/supply-chain.md says
#: which advisory each floor answers).
FLOORS = {
    "flask": "3.1.1",
    "werkzeug": "3.1.4",
    "jinja2": "3.1.6",
    "requests": "2.32.4",
    "urllib3": "2.6.0",
    "pillow": "11.3.0",
    "cryptography": "44.0.1",
    "waitress": "3.0.1",
}
#: Floors of the stand-ins, which `make run` and the compose stack serve on the network.
RUN_FLOORS = {"aiosmtpd": "1.4.6"}

#: What `make run` must not install: the test, lint and benchmark tools.
NOT_FOR_RUN = ("playwright", "mypy", "ruff", "pytest", "dramatiq", "celery", "matplotlib")

_PIN = re.compile(r"^([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s;\\]+)")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(*extras: str) -> list[Requirement]:
    """The core dependencies and those of `extras`, extras of the project itself unfolded."""
    project = _pyproject()["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in project["optional-dependencies"], f"pyproject.toml has no extra {extra!r}"
        for text in project["optional-dependencies"][extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == PROJECT:
                todo.extend(req.extras)
            else:
                found.append(req)
    return found


def _lock(name: str) -> dict[str, tuple[Version, int]]:
    """A lock's pins: name -> (version, how many hashes)."""
    pins: dict[str, tuple[Version, int]] = {}
    current = ""
    assert (LOCKS / name).is_file(), f"no lock file requirements/{name}: run `make lock`"
    for line in (LOCKS / name).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (Version(match.group(3)), 0)
        elif "--hash=sha256:" in line and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            assert line.startswith(" "), f"{name}: not a pinned requirement: {line!r}"
    return pins


def _minimum(req: Requirement) -> Version | None:
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(lows) if lows else None


@pytest.mark.parametrize("name", LOCK_EXTRAS)
def test_every_pin_of_a_lock_is_exact_and_hashed(name: str) -> None:
    pins = _lock(name)
    assert pins, f"requirements/{name} pins nothing"
    unhashed = sorted(pkg for pkg, (_, hashes) in pins.items() if hashes == 0)
    assert unhashed == [], f"requirements/{name}: pins without a hash: {unhashed}"


@pytest.mark.parametrize(("name", "extras"), LOCK_EXTRAS.items())
def test_a_lock_holds_what_pyproject_asks_for(name: str, extras: tuple[str, ...]) -> None:
    """A dependency added to pyproject.toml without `make lock` fails here, not in CI's install."""
    pins = _lock(name)
    stale = []
    for req in _requirements(*extras):
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        pin = pins.get(canonicalize_name(req.name))
        if pin is None or not req.specifier.contains(pin[0], prereleases=True):
            stale.append(f"{req} (locked: {pin[0] if pin else 'missing'})")
    assert stale == [], f"requirements/{name} is stale, run `make lock`: {stale}"


def _hashes(name: str, package: str) -> set[str]:
    """The hashes a lock gives `package`."""
    found: set[str] = set()
    current = ""
    for line in (LOCKS / name).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
        elif current == package and "--hash=sha256:" in line:
            found.add(line.split("--hash=sha256:")[1].split()[0])
    return found


@pytest.mark.parametrize("name", ["all.lock", "dev.lock"])
def test_uv_lock_is_uv_alone_as_the_other_locks_pin_it(name: str) -> None:
    """The Makefile and the Dockerfile bootstrap uv from uv.lock, then install a lock with it:
    the same release and files as all.lock resolved (and dev.lock installs again)."""
    pins = _lock("uv.lock")
    assert list(pins) == ["uv"], pins
    assert pins["uv"] == _lock(name)["uv"]
    assert _hashes("uv.lock", "uv") == _hashes(name, "uv")


def test_the_production_lock_holds_no_stand_in_and_run_no_test_tool() -> None:
    prod = _lock("prod.lock")
    assert "moto" not in prod and "aiosmtpd" not in prod and "honcho" not in prod
    run = _lock("run.lock")
    assert [name for name in NOT_FOR_RUN if name in run] == []


def _below_floors(reqs: list[Requirement], floors: dict[str, str]) -> list[str]:
    declared = {canonicalize_name(r.name): r for r in reqs}
    below = []
    for name, floor in floors.items():
        req = declared.get(canonicalize_name(name))
        low = _minimum(req) if req else None
        if low is None or low < Version(floor):
            below.append(f"{name}: minimum {low}, needs >= {floor}")
    return below


def test_the_minimums_are_past_the_known_advisories() -> None:
    assert _below_floors(_requirements(), FLOORS) == []


def test_the_stand_ins_minimums_are_past_the_known_advisories() -> None:
    assert _below_floors(_requirements("run"), RUN_FLOORS) == []


@pytest.mark.parametrize("name", LOCK_EXTRAS)
def test_no_lock_pins_a_release_below_its_floor(name: str) -> None:
    pins = _lock(name)
    below = [
        f"{pkg}=={pins[pkg][0]}"
        for pkg, floor in {**FLOORS, **RUN_FLOORS}.items()
        if pkg in pins and pins[pkg][0] < Version(floor)
    ]
    assert below == []


def test_every_floor_is_explained_in_the_docs() -> None:
    doc = ROOT / "docs" / "supply-chain.md"
    assert doc.is_file(), "docs/supply-chain.md explains no floor"
    docs = doc.read_text().lower()
    assert [name for name in {**FLOORS, **RUN_FLOORS} if f"`{name}" not in docs] == []


def test_ruff_and_mypy_are_pinned_exactly() -> None:
    dev = {canonicalize_name(r.name): r for r in _requirements("dev")}
    for tool in ("ruff", "mypy"):
        pinned = dev[canonicalize_name(tool)]
        operators = [s.operator for s in pinned.specifier]
        assert operators == ["=="], f"{tool}: {pinned}"


def test_make_run_needs_no_test_tools() -> None:
    run = {canonicalize_name(r.name) for r in _requirements("run")}
    assert "honcho" in run and "moto" in run
    assert [name for name in NOT_FOR_RUN if name in run] == []


def test_moto_is_bounded_below_its_next_major() -> None:
    moto = next(r for r in _requirements("run") if canonicalize_name(r.name) == "moto")
    assert not moto.specifier.contains("6.0"), str(moto)


def test_no_unused_dependency() -> None:
    project = _pyproject()["project"]
    every = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    assert "pyinstrument" not in {canonicalize_name(Requirement(r).name) for r in every}


def test_nothing_imports_motos_internals() -> None:
    """moto documents `moto.server` (ThreadedMotoServer, the server mode) and its decorators;
    anything under another `moto.` module may move in a minor release."""
    internal = re.compile(r"^\s*(from|import)\s+moto\.(?!server\b)", re.M)
    found = [
        str(path.relative_to(ROOT))
        for folder in ("shared", "services", "dev", "tests", "bench", "chaos")
        for path in (ROOT / folder).rglob("*.py")
        if internal.search(path.read_text())
    ]
    assert found == []
