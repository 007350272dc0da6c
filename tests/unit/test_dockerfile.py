"""The production image, read from the Dockerfile (no daemon needed): its default stage
installs the production lock with hashes and nothing else, carries no stand-ins, dev/ or
tests/, and runs as an unprivileged user."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _stages() -> list[Stage]:
    """The Dockerfile's stages, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(name, parts[0]))
        elif stages:
            stages[-1].instructions.append((keyword, " ".join(rest.split())))
    return stages


def _production() -> list[Stage]:
    """The default (last) stage and every stage it is built FROM, base first."""
    stages = _stages()
    by_name = {s.name: s for s in stages if s.name}
    chain = [stages[-1]]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    return chain


def _instructions(keyword: str) -> list[str]:
    return [rest for stage in _production() for kw, rest in stage.instructions if kw == keyword]


def test_the_image_installs_the_production_lock_with_hashes() -> None:
    installs = [run for run in _instructions("RUN") if "pip install" in run]
    assert any(
        "--require-hashes" in run and "--no-deps" in run and "requirements/prod.lock" in run
        for run in installs
    ), installs
    for run in installs:
        for command in run.split("&&"):
            if "pip install" in command:
                assert "--require-hashes" in command or "--no-deps" in command, command


def test_the_image_installs_as_the_makefile_does_and_keeps_no_uv() -> None:
    """pip installs uv aside from uv.lock with its hashes, uv installs the lock into the image's
    Python, and the same RUN removes uv again."""
    [run] = [run for run in _instructions("RUN") if "requirements/prod.lock" in run]
    steps = [step.strip() for step in run.split("&&")]
    assert len(steps) == 3, steps
    bootstrap, install, cleanup = steps
    assert bootstrap.startswith("pip install --require-hashes --no-deps --target /tmp/uv ")
    assert bootstrap.endswith("-r requirements/uv.lock"), bootstrap
    assert install.startswith("/tmp/uv/bin/uv pip install --system --no-cache "), install
    assert "--require-hashes --no-deps" in install and install.endswith("requirements/prod.lock")
    assert cleanup == "rm -rf /tmp/uv"
    copies = [word for c in _instructions("COPY") for word in c.split()[:-1]]
    assert "requirements/uv.lock" in copies, copies


def test_the_image_copies_only_the_product() -> None:
    copied = [c for c in _instructions("COPY") if not c.startswith("--from")]
    sources = [word for c in copied for word in c.split()[:-1] if not word.startswith("--")]
    assert sources, copied
    assert [s for s in sources if s in (".", "./") or s.rstrip("/") in ("dev", "tests")] == []
    assert "requirements/run.lock" not in sources and "requirements/dev.lock" not in sources


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = _instructions("USER")
    assert users, "the production image never leaves root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_the_base_image_can_be_pinned_by_digest() -> None:
    """The base comes from a build argument, so a digest (python:3.11-slim@sha256:...) can be
    given at build time; docs/supply-chain.md says how."""
    assert _production()[0].base.startswith("${PYTHON_IMAGE")


def test_the_product_imports_nothing_the_image_leaves_out() -> None:
    """shared/ and services/ are all the image holds: importing dev/, tests/ or a package only
    the run and dev locks bring would fail in production alone."""
    left_out = re.compile(
        r"^\s*(from|import)\s+(dev|tests|moto|aiosmtpd|honcho|pytest"
        r"|playwright|testcontainers|jsonschema)\b",
        re.M,
    )
    found = [
        str(path.relative_to(ROOT))
        for folder in ("shared", "services")
        for path in (ROOT / folder).rglob("*.py")
        if left_out.search(path.read_text())
    ]
    assert found == []
