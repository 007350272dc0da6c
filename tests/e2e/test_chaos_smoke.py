"""A short seeded subset of the fault matrix (`make chaos` runs all of it), and every failure it
found, kept as a regression test with the row and seed that showed it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.faults import SCENARIOS
from chaos.ledger import Row
from chaos.run import run_row
from dev.rabbit_node import Node

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

SMOKE_SEED = 20261127
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}

#: Every failure the matrix found in services/ or shared/, as (row, seed, diagnosis, fixed).
#: Not fixed yet: expected to fail, strictly, so the fix makes this test fail until its entry
#: says fixed; from then on it is a plain regression test.
REGRESSIONS: list[tuple[str, int, str, bool]] = [
    (
        "retry-after-refusal",
        3,
        "the uploader's reconcile matches captions by substring: "
        "ref:A:1 finds image 10's photo, image 1 never reaches Facebook",
        True,
    ),
    (
        "uploader-kill-graph",
        4,
        "a redelivered image uploads again while the killed process's "
        "request is still completing on Facebook: duplicate photos",
        True,
    ),
    (
        "duplicates-in-flight",
        4,
        "an image and its duplicated message are uploaded by two "
        "workers at once: start_attempt does not hold the image",
        True,
    ),
    (
        "store-blips",
        2,
        "a POST answered 503 for an album committed and queued (marking its "
        "outbox rows published failed): the client published it again",
        True,
    ),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    if not list(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin/rabbitmq-server")):
        pytest.skip("RabbitMQ is not installed here: the chaos run starts a node of its own")
    node = Node(tmp_path_factory.mktemp("chaos") / "node")
    node.start()
    yield node
    node.kill()
    node.remove_data()


def _row(node: Node, name: str, seed: int, workdir: Path) -> Row:
    return run_row(node, BY_NAME[name], seed, quick=True, workdir=workdir)


def _explain(row: Row, workdir: Path) -> str:
    return f"{row.name} (seed {row.seed}), logs in {workdir / row.name}:\n  " + "\n  ".join(
        row.problems[:8]
    )


QUICK = [s.name for s in SCENARIOS if s.quick and s.name not in {r[0] for r in REGRESSIONS}]


@pytest.mark.parametrize("name", QUICK)
def test_quick_row_passes(node: Node, name: str, tmp_path: Path) -> None:
    row = _row(node, name, SMOKE_SEED, tmp_path)
    assert row.passed, _explain(row, tmp_path)


@pytest.mark.parametrize(
    ("name", "seed", "found"),
    [
        pytest.param(
            name,
            seed,
            found,
            id=f"{name}-seed{seed}",
            marks=() if fixed else pytest.mark.xfail(strict=True, reason=found),
        )
        for name, seed, found, fixed in REGRESSIONS
    ],
)
def test_regression(node: Node, name: str, seed: int, found: str, tmp_path: Path) -> None:
    row = _row(node, name, seed, tmp_path)
    assert row.passed, f"{found}\n{_explain(row, tmp_path)}"
