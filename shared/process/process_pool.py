"""Several processes of one service, under one parent: what gives a consumer more than one core.

One Python process runs its threads one at a time (the GIL): at 20 uploads at once, the work
around each upload (the store, botocore, the multipart body) queues behind it, which P3 in
`make bench` shows. The parent starts `count` copies of the service's command, starts again a
copy that died, passes SIGTERM on, and takes its copies with it if it is killed itself, so a
supervisor (honcho, compose, systemd) still sees one process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: A copy that keeps dying is started again no faster than this.
_RESTART_PAUSE_S = 1.0


def supervise(
    count: int,
    module: str,
    env: Mapping[str, str],
    stop: threading.Event,
    grace_s: float,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """Run `count` copies of `python -m module` with `env` added, until `stop`; 0 on a clean
    stop, 1 if a copy did not end within `grace_s` after SIGTERM (it is killed). `on_exit`
    is told the pid of each copy that exited and is started again."""
    children = [_spawn(module, env) for _ in range(count)]
    log.info("%s: %d processes %s", module, count, [child.pid for child in children])
    while not stop.wait(_RESTART_PAUSE_S):
        for n, child in enumerate(children):
            if child.poll() is not None:
                log.warning(
                    "%s: process %d exited with %s; starting it again",
                    module,
                    child.pid,
                    child.returncode,
                )
                if on_exit is not None:
                    on_exit(child.pid)
                children[n] = _spawn(module, env)
    return _stop_all(children, grace_s)


def _spawn(module: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module], env={**os.environ, **env}, preexec_fn=_die_with_parent
    )


def _die_with_parent() -> None:
    # In the child, before exec: if the parent is SIGKILLed, the kernel kills this copy too,
    # so that killing the service kills all of it (its unacked messages come back).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_all(children: list[subprocess.Popen[bytes]], grace_s: float) -> int:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    clean = True
    for child in children:
        try:
            # Each copy drains its own uploads within the grace; a little more for the exit.
            child.wait(grace_s + 10)
        except subprocess.TimeoutExpired:
            log.error("process %d did not stop in time; killing it", child.pid)
            child.kill()
            child.wait()
            clean = False
    return 0 if clean else 1
