"""`make test`'s type check beside its tests: one command runs in the background while another
runs in the foreground, when the machine has a core to spare for it.

mypy with no cache (a clean clone, CI) computes for a minute and more on one core, while pytest
spends much of its time waiting on the broker, the store and the processes it starts; on two
cores the two together take little more than pytest alone. The background command's output is
kept aside and printed whole after the foreground's ends, under a line that names it, so the two
never interleave; either one failing fails the run. With a single core the two run one after
the other (the background one first, as `make test` did before), output as it comes.

    python -m dev.alongside --beside "mypy shared services" -- pytest -q -m "not slow"
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence

#: Cores below which the two commands run one after the other.
MIN_CORES = 2


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def run_in_turn(beside: Sequence[str], main: Sequence[str]) -> int:
    """`beside`, then `main` even when `beside` failed (both reports are wanted)."""
    first = subprocess.run(beside, check=False).returncode
    second = subprocess.run(main, check=False).returncode
    return second or first


def run_together(beside: Sequence[str], main: Sequence[str]) -> int:
    """`beside` in the background, its output held in a file until `main` has ended."""
    with tempfile.TemporaryFile() as held:
        background = subprocess.Popen(beside, stdout=held, stderr=subprocess.STDOUT)
        try:
            second = subprocess.run(main, check=False).returncode
            first = background.wait()
        finally:
            # An interrupted run (Ctrl-C, a timeout) leaves nothing behind.
            if background.poll() is None:
                background.kill()
                background.wait()
        sys.stdout.flush()
        print(f"==> {shlex.join(beside)} (ran beside the tests): exit {first}", flush=True)
        held.seek(0)
        sys.stdout.buffer.write(held.read())
        sys.stdout.flush()
    return second or first


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.alongside", description=__doc__)
    parser.add_argument("--beside", required=True, help="the background command, one string")
    parser.add_argument("command", nargs="+", help="the foreground command (after --)")
    args = parser.parse_args(argv)
    beside = shlex.split(args.beside)
    if usable_cores() < MIN_CORES:
        return run_in_turn(beside, args.command)
    return run_together(beside, args.command)


if __name__ == "__main__":
    sys.exit(main())
