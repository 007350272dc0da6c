"""Secrets a local run makes for itself and keeps under var/, for settings left empty.

A key made once and kept (not derived from another setting) is unknown to anyone without the
file. Several processes starting together (the API beside the uploader and the notifier) must
end up with the same key: each writes its draft to a file of its own, mode 0600, then links it
into place, which fails for all but the first; everyone then reads the one that won. Never used
in production, where the settings refuse to start without their secrets (APP_ENV).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

#: Where a local run keeps the secrets it made (relative to the working directory, as var/ is).
LOCAL_DIR = Path("var")


def local_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made by `make` and stored (mode 0600) if there is none yet."""
    if not path.exists():
        _store_first(path, make())
    return path.read_text().strip()


def _store_first(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A random draft name: two threads of one process must not share a draft either.
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(value)
            out.flush()
            os.fsync(out.fileno())
        os.link(draft, path)
    except FileExistsError:
        pass  # another process linked its key first: that one is everyone's
    finally:
        draft.unlink()
